-- The peer's certificate and chain, verification results, and a client
-- certificate demanded by the server; then a chain that does not verify.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

local function names(list)
  local words = {}
  for _, entry in ipairs(list) do words[#words + 1] = entry.oid .. "/" .. entry.name .. "=" .. entry.value end
  return table.concat(words, ", ")
end

local function describe(cert)
  c.out("subject", names(cert:subject()))
  c.out("issuer", names(cert:issuer()))
  c.out("serial", cert:serial(), "notbefore", cert:notbefore(), "notafter", cert:notafter())
  c.out("digest", cert:digest(), cert:digest("sha256"))
  local san = cert:extensions()["2.5.29.17"] or {}
  c.out("san", san.name, table.concat(san.dNSName or {}, ","), table.concat(san.iPAddress or {}, ","))
  c.out("validat", cert:validat(os.time()), cert:validat(0))
end

function P.server(port)
  local server = c.listen(port)
  local ctx = assert(ssl.newcontext(c.server_params {
    certificate = c.F .. "server-chain.pem", cafile = c.F .. "ca.pem",
    verify = { "peer", "fail_if_no_peer_cert" } }))
  for round = 1, 4 do
    local conn = assert(ssl.wrap(assert(server:accept()), ctx))
    local ok = conn:dohandshake()
    c.out("handshake", round, ok)
    if ok then
      c.out("verification", conn:getpeerverification())
      describe(conn:getpeercertificate())
      c.out("chain", #conn:getpeerchain())
    end
    conn:close()
  end
end

function P.client(port)
  local with_cert = c.client_params { key = c.F .. "client.key", certificate = c.F .. "client.pem" }
  local conn = assert(ssl.wrap(c.connect(port), with_cert))
  conn:sni("localhost")
  c.out("handshake", conn:dohandshake())
  c.out("verification", conn:getpeerverification())
  describe(conn:getpeercertificate())
  local chain = conn:getpeerchain()
  c.out("chain", #chain, chain[2] and names(chain[2]:subject()), conn:getpeercertificate(2) ~= nil,
        conn:getpeercertificate(3))
  c.out("pem", conn:getpeercertificate():pem() == io.open(c.F .. "server.pem"):read("a"))
  conn:close()
  -- no client certificate: the server refuses (TLS 1.2, so the client sees it)
  conn = assert(ssl.wrap(c.connect(port), c.client_params { protocol = "tlsv1_2" }))
  conn:sni("localhost")
  c.out("without certificate", conn:dohandshake())
  conn:close()
  -- a CA that did not sign the server's certificate
  conn = assert(ssl.wrap(c.connect(port), c.client_params { cafile = c.F .. "otherca.pem" }))
  conn:sni("localhost")
  c.out("untrusted", conn:dohandshake())
  c.out("verification", conn:getpeerverification())
  conn:close()
  -- the same, with LuaSec's "continue anyway": the handshake ends, the
  -- verification result tells
  conn = assert(ssl.wrap(c.connect(port), c.client_params {
    cafile = c.F .. "otherca.pem", verifyext = { "lsec_continue" },
    key = c.F .. "client.key", certificate = c.F .. "client.pem" }))
  conn:sni("localhost")
  c.out("continue", conn:dohandshake())
  local ok, errors = conn:getpeerverification()
  c.out("verification", ok, type(errors))
  for depth, list in pairs(errors or {}) do c.out("depth", depth, table.concat(list, "; ")) end
  conn:close()
end

return P
