-- Failures a peer causes: a server that speaks plain text, one that closes at
-- once, no common protocol version; and calls before the handshake.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

function P.server(port)
  local server = c.listen(port)
  local plain = assert(server:accept())
  plain:send("HTTP/1.0 400 Bad Request\r\n\r\n")
  plain:close()
  local tcp = assert(server:accept()) -- reads the ClientHello, then closes: a clean FIN
  tcp:settimeout(0.3)
  tcp:receive("*a")
  tcp:close()
  local conn = assert(ssl.wrap(assert(server:accept()), c.server_params { protocol = "tlsv1_2" }))
  c.out("version mismatch", conn:dohandshake())
  conn:close()
  conn = assert(ssl.wrap(assert(server:accept()), c.server_params()))
  c.out("handshake", conn:dohandshake())
  conn:close()
  -- vanishes after a few bytes: no close_notify
  conn = assert(ssl.wrap(assert(server:accept()), c.server_params()))
  c.out("handshake", conn:dohandshake())
  c.out("send", conn:send("last words"))
  io.stdout:flush()
  os.exit(0, false)
end

function P.client(port)
  for _, case in ipairs { "plain text", "closed at once", "version mismatch" } do
    local conn = assert(ssl.wrap(c.connect(port), c.client_params { protocol = "tlsv1_3" }))
    conn:sni("localhost")
    conn:settimeout(5)
    c.out(case, conn:dohandshake())
    c.out("want", conn:want())
    conn:close()
  end
  local conn = assert(ssl.wrap(c.connect(port), c.client_params()))
  c.out("receive before the handshake", conn:receive())
  c.out("send before the handshake", conn:send("x"))
  conn:sni("localhost")
  c.out("handshake", conn:dohandshake())
  conn:close()
  conn = assert(ssl.wrap(c.connect(port), c.client_params()))
  conn:sni("localhost")
  c.out("handshake", conn:dohandshake())
  conn:settimeout(5)
  c.out("vanished", conn:receive("*a"))
  conn:close()
end

return P
