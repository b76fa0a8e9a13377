-- info(): the cipher's description for TLS 1.2 (ECDSA, RSA-less) and 1.3,
-- a chosen TLS 1.2 cipher, and the exporter on both ends.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

local CLIENTS = {
  { protocol = "tlsv1_3" },
  { protocol = "tlsv1_2" },
  { protocol = "tlsv1_2", ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" },
  { protocol = "tlsv1_3", ciphersuites = "TLS_CHACHA20_POLY1305_SHA256" },
}

function P.server(port)
  local server = c.listen(port)
  local ctx = assert(ssl.newcontext(c.server_params()))
  for _ = 1, #CLIENTS do
    local conn = assert(ssl.wrap(assert(server:accept()), ctx))
    c.out("handshake", conn:dohandshake())
    c.out("info", c.fields(conn:info()))
    c.out("exporter", #conn:exportkeyingmaterial("EXPORTER-luasec-test", 16))
    conn:close()
  end
end

function P.client(port)
  for _, extra in ipairs(CLIENTS) do
    local conn = assert(ssl.wrap(c.connect(port), c.client_params(extra)))
    conn:sni("localhost")
    c.out("handshake", conn:dohandshake())
    c.out("info", c.fields(conn:info()))
    c.out("fields", conn:info("cipher"), conn:info("protocol"), conn:info("bits"))
    c.out("exporter", #conn:exportkeyingmaterial("EXPORTER-luasec-test", 16))
    conn:close()
  end
end

return P
