-- An upload-only client: 4 MiB sent, then close() at once, the server's
-- TLS 1.3 session tickets never read. What close() does with those unread
-- bytes decides whether the upload arrives: closing a socket with unread
-- data makes the kernel send a reset, and the server's kernel may then drop
-- what the server has not read yet.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

local SIZE = 4 * 1024 * 1024

function P.server(port)
  local server = c.listen(port)
  local sock = assert(server:accept())
  local conn = assert(ssl.wrap(sock, c.server_params()))
  c.out("handshake", conn:dohandshake())
  local got = 0
  while true do
    local data, err, partial = conn:receive(65536)
    got = got + #(data or partial)
    if err then
      c.out("received", got, err)
      break
    end
  end
  conn:close()
end

function P.client(port)
  local conn = assert(ssl.wrap(c.connect(port), c.client_params()))
  conn:sni("localhost")
  c.out("handshake", conn:dohandshake())
  c.out("sent", conn:send(("u"):rep(SIZE)))
  conn:close()
end

return P
