-- ALPN: what client and server agree on, and no agreement.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

local OFFERS = { { "h2", "http/1.1" }, { "spdy/3" }, "http/1.1", false }

function P.server(port)
  local server = c.listen(port)
  local ctx = assert(ssl.newcontext(c.server_params { alpn = { "http/1.1", "h2" } }))
  for _ = 1, #OFFERS do
    local conn = assert(ssl.wrap(assert(server:accept()), ctx))
    c.out("handshake", conn:dohandshake(), conn:getalpn())
    conn:close()
  end
end

function P.client(port)
  for _, offer in ipairs(OFFERS) do
    local conn = assert(ssl.wrap(c.connect(port), c.client_params { alpn = offer or nil }))
    conn:sni("localhost")
    c.out("handshake", type(offer) == "table" and table.concat(offer, ",") or offer,
          conn:dohandshake(), conn:getalpn())
    conn:close()
  end
end

return P
