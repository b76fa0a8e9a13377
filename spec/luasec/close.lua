-- Closing: the peer's close_notify seen as "closed", descriptors handed over
-- and released, methods on a closed connection, stats. The client reads the
-- server's reply (and with it TLS 1.3's session tickets) before it closes:
-- closing with unread data would send a TCP reset that can overtake the
-- close_notify, and the server would then see either, at random.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

function P.server(port)
  local server = c.listen(port)
  local sock = assert(server:accept())
  local conn = assert(ssl.wrap(sock, c.server_params()))
  c.out("socket fd after wrap", sock:getfd())
  c.out("handshake", conn:dohandshake())
  c.out("line", conn:receive("*l"))
  c.out("stats", conn:getstats() > 0)
  c.out("reply", conn:send("reply\n"))
  c.out("closed by peer", conn:receive("*l"))
  c.out("close", conn:close())
  c.out("close twice", conn:close())
  c.out("fd", conn:getfd())
  c.out("receive after close", conn:receive())
  c.out("send after close", conn:send("x"))
end

function P.client(port)
  local conn = assert(ssl.wrap(c.connect(port), c.client_params()))
  conn:sni("localhost")
  c.out("fd", conn:getfd() > 2)
  c.out("handshake", conn:dohandshake())
  c.out("send", conn:send("a line\n"))
  c.out("reply", conn:receive("*l"))
  local received, sent = conn:getstats()
  c.out("stats", received, sent)
  c.out("setstats", conn:setstats(10, 20, 0))
  received, sent = conn:getstats()
  c.out("stats", received, sent)
  c.out("close", conn:close())
  c.out("tostring", (tostring(conn):gsub("0x%x+", "ADDR")))
end

return P
