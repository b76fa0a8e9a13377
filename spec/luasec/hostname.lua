-- A documented difference: a client that verifies and names the server with
-- sni("wrong.example") while the server's certificate is for localhost.
-- LuaSec accepts it (it never checks the host name); lunatls.luasec refuses.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

function P.server(port)
  local server = c.listen(port)
  local conn = assert(ssl.wrap(assert(server:accept()), c.server_params()))
  c.out("handshake", (conn:dohandshake()))
  conn:close()
end

function P.client(port)
  local conn = assert(ssl.wrap(c.connect(port), c.client_params()))
  conn:sni("wrong.example")
  c.out("handshake", conn:dohandshake())
  conn:close()
end

return P
