-- A blocking echo: the server greets, the client answers one line.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

function P.server(port)
  local server = c.listen(port)
  local conn = assert(ssl.wrap(assert(server:accept()), c.server_params()))
  c.out("handshake", conn:dohandshake())
  c.out("send", conn:send("hello from the server\n"))
  c.out("line", conn:receive("*l"))
  c.out("again", conn:receive("*l"))
  conn:close()
end

function P.client(port)
  local conn = assert(ssl.wrap(c.connect(port), c.client_params()))
  conn:sni("localhost")
  c.out("handshake", conn:dohandshake())
  c.out("line", conn:receive())
  c.out("send", conn:send("thanks\r\n"))
  c.out("close", conn:close())
end

return P
