-- Certificate verification failures, host names and IP addresses, and the
-- certificate objects (checked against what `openssl x509` says).

local pair = require "helpers.pair"
local certs = require "helpers.certs"

local F = pair.fixture

local function server_with(name)
  return pair.server_context { certificate = F(name .. ".pem"), key = F(name .. ".key") }
end

local function handshake(opts)
  local p = pair.new(opts)
  return p:handshake(), p
end

describe("certificate verification", function()
  teardown(certs.cleanup)

  -- fixture, the X509 reason the client reports, the alert the server hears
  local failures = {
    { "wronghost", "hostname mismatch", "sslv3 alert bad certificate" },
    { "expired", "certificate has expired", "sslv3 alert certificate expired" },
    { "notyet", "certificate is not yet valid", "sslv3 alert bad certificate" },
    { "selfsigned", "self-signed certificate", "tlsv1 alert unknown ca" },
    { "untrusted", "unable to get local issuer certificate", "tlsv1 alert unknown ca" },
  }
  for _, case in ipairs(failures) do
    local fixture, reason, alert = case[1], case[2], case[3]
    it(("fails with 'verify' for the %s certificate: %s"):format(fixture, reason), function()
      local result, p = handshake { server_ctx = server_with(fixture) }
      assert.is_nil(result.client.status)
      assert.equal("verify", result.client.code)
      local detail = fixture == "wronghost" and " (expected 'localhost'; the certificate is for wrong.example)" or ""
      assert.equal("do_handshake: certificate verify failed: " .. reason .. detail, result.client.message)
      assert.equal("protocol", result.server.code)
      assert.equal("do_handshake: " .. alert, result.server.message)
      local code, message = p.client.conn:verify_result()
      assert.is_true(code > 0)
      assert.equal(reason, message)
    end)
  end

  it("accepts the good certificate: verify_result() is 0, 'ok'", function()
    local result, p = handshake {}
    assert.equal("done", result.client.status)
    assert.same({ 0, "ok" }, { p.client.conn:verify_result() })
  end)

  it("reports the failure code through verify_result() when verify='none' let it pass", function()
    local ctx = pair.client_context { verify = "none" }
    local result, p = handshake { client_ctx = ctx, client = {}, server_ctx = server_with("expired") }
    assert.equal("done", result.client.status)
    assert.same({ 10, "certificate has expired" }, { p.client.conn:verify_result() }) -- X509_V_ERR_CERT_HAS_EXPIRED
  end)

  it("never matches the host name against the subject CN", function()
    local leaf = certs.leaf("no-san", "") -- CN=localhost, no subjectAltName
    local result = handshake { server_ctx = pair.server_context { certificate = leaf } }
    assert.equal("verify", result.client.code)
    assert.equal("do_handshake: certificate verify failed: hostname mismatch (expected 'localhost'; "
      .. "the certificate has no subject alternative name)", result.client.message)
  end)

  it("accepts a whole-label wildcard but never a partial one", function()
    local whole = certs.leaf("wildcard", "subjectAltName=DNS:*.lunatls.example\n")
    local partial = certs.leaf("partial-wildcard", "subjectAltName=DNS:w*.lunatls.example\n")
    local client = { server_name = "www.lunatls.example" }
    local result = handshake { server_ctx = pair.server_context { certificate = whole }, client = client }
    assert.equal("done", result.client.status)
    result = handshake { server_ctx = pair.server_context { certificate = whole },
                         client = { server_name = "a.b.lunatls.example" } }
    assert.equal("verify", result.client.code)
    result = handshake { server_ctx = pair.server_context { certificate = partial }, client = client }
    assert.equal("verify", result.client.code)
    assert.equal("do_handshake: certificate verify failed: hostname mismatch (expected "
      .. "'www.lunatls.example'; the certificate is for w*.lunatls.example)", result.client.message)
  end)

  it("compares host names without regard to case", function()
    local result = handshake { client = { server_name = "LocalHost" } }
    assert.equal("done", result.client.status)
  end)

  describe("an IP address as server_name", function()
    it("verifies 127.0.0.1 against the IP SAN and does not send it as SNI", function()
      local result, p = handshake { client = { server_name = "127.0.0.1" } }
      assert.equal("done", result.client.status)
      assert.is_nil(p.server.conn:server_name())
      assert.is_nil(p.client.conn:server_name())
    end)

    it("verifies ::1 against the IPv6 SAN", function()
      local result, p = handshake { client = { server_name = "::1" } }
      assert.equal("done", result.client.status)
      assert.is_nil(p.server.conn:server_name())
    end)

    it("fails with 'IP address mismatch' for an address the certificate does not list", function()
      local result = handshake { client = { server_name = "127.0.0.2" } }
      assert.equal("verify", result.client.code)
      assert.equal("do_handshake: certificate verify failed: IP address mismatch (expected '127.0.0.2'; "
        .. "the certificate is for localhost, 127.0.0.1, ::1)", result.client.message)
      result = handshake { client = { server_name = "127.0.0.1" }, server_ctx = server_with("wronghost") }
      assert.equal("do_handshake: certificate verify failed: IP address mismatch (expected '127.0.0.1'; "
        .. "the certificate is for wrong.example)", result.client.message)
    end)
  end)

  describe("client certificates", function()
    local function requiring()
      return pair.server_context { verify = "require", cafile = F"ca.pem" }
    end

    it("verify='require' fails with 'verify' on the server when the client sends none", function()
      local result, p = handshake { server_ctx = requiring() }
      assert.equal("verify", result.server.code)
      assert.equal("do_handshake: peer did not return a certificate", result.server.message)
      -- in TLS 1.3 the client has finished first and hears the alert on its next read
      assert.equal("done", result.client.status)
      p:pump()
      assert.same({ nil, "read: tlsv13 alert certificate required", "protocol" }, { p.client.conn:read() })
    end)

    it("verify='require' fails in TLS 1.2 on both sides during the handshake", function()
      local result = handshake { server_ctx = requiring(),
                                 client_ctx = pair.client_context { max_version = "tls1.2" } }
      assert.equal("verify", result.server.code)
      assert.equal("do_handshake: peer did not return a certificate", result.server.message)
      assert.equal("protocol", result.client.code)
    end)

    it("fails with 'verify' on the server for a client certificate from an untrusted CA", function()
      local client_ctx = pair.client_context { certificate = F"otherclient.pem", key = F"otherclient.key" }
      local result, p = handshake { server_ctx = requiring(), client_ctx = client_ctx }
      assert.equal("verify", result.server.code)
      assert.equal("do_handshake: certificate verify failed: unable to get local issuer certificate",
        result.server.message)
      p:pump()
      assert.same({ nil, "read: tlsv1 alert unknown ca", "protocol" }, { p.client.conn:read() })
    end)

    it("lets the server see a trusted client certificate", function()
      local client_ctx = pair.client_context { certificate = F"client.pem", key = F"client.key" }
      local result, p = handshake { server_ctx = requiring(), client_ctx = client_ctx }
      assert.equal("done", result.server.status)
      local cert = p.server.conn:peer_certificate()
      assert.equal("CN=lunatls test client,O=lunatls tests", cert:subject())
      assert.same({ 0, "ok" }, { p.server.conn:verify_result() })
      -- peer_chain puts the client's own certificate first on the server too;
      -- the client completed its chain from its trusted CAs
      local chain = p.server.conn:peer_chain()
      assert.equal(2, #chain)
      assert.equal(cert, chain[1])
      assert.equal("CN=lunatls test CA,O=lunatls tests", chain[2]:subject())
    end)
  end)
end)

describe("certificate objects", function()
  local p, cert

  setup(function()
    p = pair.new():connect()
    cert = p.client.conn:peer_certificate()
  end)

  it("give subject and issuer in RFC 2253 form", function()
    assert.equal("CN=localhost,O=lunatls tests", cert:subject())
    assert.equal("CN=lunatls test CA,O=lunatls tests", cert:issuer())
  end)

  it("list the subject alternative names as plain values", function()
    assert.same({ "localhost", "127.0.0.1", "::1" }, cert:subject_alt_names())
    local client_ctx = pair.client_context { certificate = F"client.pem", key = F"client.key" }
    local q = pair.new { client_ctx = client_ctx,
                         server_ctx = pair.server_context { verify = "peer", cafile = F"ca.pem" } }:connect()
    assert.same({}, q.server.conn:peer_certificate():subject_alt_names())
  end)

  it("give not_before and not_after in seconds since the epoch, as openssl x509 does", function()
    assert.equal(math.type(cert:not_before()), "integer")
    assert.equal(certs.openssl_date(F"server.pem", "startdate"), cert:not_before())
    assert.equal(certs.openssl_date(F"server.pem", "enddate"), cert:not_after())
    assert.is_true(cert:not_before() < os.time() and os.time() < cert:not_after())
  end)

  it("give dates in the past and the future for expired and notyet", function()
    local ctx = pair.client_context { verify = "none" }
    local expired = pair.new { client_ctx = ctx, client = {}, server_ctx = server_with("expired") }:connect()
    local c = expired.client.conn:peer_certificate()
    assert.equal(946684800, c:not_before()) -- 2000-01-01T00:00:00Z
    assert.equal(978307200, c:not_after()) -- 2001-01-01T00:00:00Z
    local notyet = pair.new { client_ctx = ctx, client = {}, server_ctx = server_with("notyet") }:connect()
    assert.equal(4102444800, notyet.client.conn:peer_certificate():not_before()) -- 2100-01-01
  end)

  it("give the serial number in hex, as openssl x509 does", function()
    assert.equal(certs.openssl_serial(F"server.pem"), cert:serial())
  end)

  it("give the sha256 fingerprint, as openssl x509 -fingerprint does", function()
    local expected = certs.openssl_fingerprint(F"server.pem")
    assert.equal(64, #expected)
    assert.equal(expected, cert:fingerprint())
    assert.equal(expected, cert:fingerprint("sha256"))
    assert.equal(40, #cert:fingerprint("sha1"))
    assert.matches("^%x+$", cert:fingerprint("sha1"))
    assert.equal(128, #cert:fingerprint("sha512"))
    pair.assert_bad_argument(function() cert:fingerprint("nope") end, 1, "fingerprint", "unknown digest 'nope'")
  end)

  it("give the PEM text, which round-trips to the fixture", function()
    assert.equal(pair.read_fixture("server.pem"), cert:pem())
  end)

  it("compare equal to themselves and not to other certificates", function()
    assert.equal(cert, p.client.conn:peer_certificate())
    assert.equal(cert, p.client.conn:peer_chain()[1])
    local other = pair.new { server_ctx = pair.server_context { certificate = F"server-chain.pem" } }:connect()
    assert.not_equal(cert, other.client.conn:peer_chain()[2])
    assert.matches("^lunatls.Certificate: /O=lunatls tests/CN=localhost$", tostring(cert))
  end)

  it("outlive their connection", function()
    local q = pair.new():connect()
    local c = q.client.conn:peer_certificate()
    q.client.conn:close()
    q = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.equal("CN=localhost,O=lunatls tests", c:subject())
  end)

  it("are what the server sees of itself in peer_chain order", function()
    local q = pair.new { server_ctx = pair.server_context { certificate = F"server-chain.pem" } }:connect()
    local chain = q.client.conn:peer_chain()
    assert.equal(2, #chain)
    assert.equal(pair.read_fixture("server-chain.pem"), chain[1]:pem() .. chain[2]:pem())
  end)
end)
