-- Key-exchange groups (curve, curveslist), a dhparam callback, and the
-- "options" words, on both ends.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

local CLIENTS = {
  { curve = "P-256" },
  { curveslist = "P-256:P-384" },
  { curveslist = "X25519" },
  { curve = "P-521", protocol = "tlsv1_2" },
  { curve = "P-384", protocol = "tlsv1_3" },
  { options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_3" } },
}

function P.server(port)
  local server = c.listen(port)
  local ctx = assert(ssl.newcontext(c.server_params {
    curveslist = "P-384:X25519:P-256", options = { "all", "cipher_server_preference", "single_ecdh_use" },
    dhparam = function() return nil end }))
  for _ = 1, #CLIENTS do
    local conn = assert(ssl.wrap(assert(server:accept()), ctx))
    local ok = conn:dohandshake()
    c.out("handshake", ok, ok and conn:info("protocol"))
    conn:close()
  end
end

function P.client(port)
  for _, extra in ipairs(CLIENTS) do
    local conn = assert(ssl.wrap(c.connect(port), c.client_params(extra)))
    conn:sni("localhost")
    local ok = conn:dohandshake()
    c.out("handshake", c.fields(extra):gsub("table: 0x%x+", "{...}"), ok, ok and conn:info("protocol"))
    conn:close()
  end
end

return P
