-- Blocking handshakes with a timeout, TLS 1.2 and 1.3, a context reused.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

function P.server(port)
  local server = c.listen(port)
  local ctx = assert(ssl.newcontext(c.server_params()))
  for _ = 1, 2 do
    local conn = assert(ssl.wrap(assert(server:accept()), ctx))
    conn:settimeout(5)
    c.out("handshake", conn:dohandshake())
    c.out("protocol", conn:info("protocol"))
    c.out("echo", conn:send((conn:receive("*l")) .. "\n"))
    conn:close()
  end
end

function P.client(port)
  for _, protocol in ipairs { "tlsv1_2", "tlsv1_3" } do
    local ctx = assert(ssl.newcontext(c.client_params { protocol = protocol }))
    local conn = assert(ssl.wrap(c.connect(port), ctx))
    conn:sni("localhost")
    c.out("settimeout", conn:settimeout(5))
    c.out("handshake", conn:dohandshake())
    c.out("again", conn:dohandshake())
    c.out("protocol", conn:info("protocol"))
    c.out("send", conn:send("over " .. protocol .. "\n"))
    c.out("echo", conn:receive("*l"))
    conn:close()
  end
end

return P
