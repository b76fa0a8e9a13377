-- Certificate checks against a generated corpus (spec/fixtures/corpus/gen.sh;
-- the files are committed): dates, host names and wildcard rules, IP address
-- SANs, name constraints, incomplete and untrusted chains, a CA used as a
-- leaf, key and extended key usage, path length, weak keys and digests, and
-- client certificates. Each case checks the handshake's result, the verify
-- code conn:verify_result() gives, and the message. What a person does about
-- each is in docs/robustness.md (the same table).

local tls = require "lunatls"
local pair = require "helpers.pair"

local D = "spec/fixtures/corpus/"

local function server_context(name, extra)
  local opts = { mode = "server", certificate = D .. name .. ".pem", key = D .. name .. ".key" }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(tls.new_context(opts))
end

local function client_context(extra)
  local opts = { mode = "client", cafile = D .. "root.pem" }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(tls.new_context(opts))
end

--- Connects a client checking `host` to a server presenting corpus case
-- `name`; returns the handshake result and the pair.
local function connect(name, host, server_extra)
  local p = pair.new { client_ctx = client_context(), server_ctx = server_context(name, server_extra),
                       client = { server_name = host } }
  return p:handshake(), p
end

-- name, server_name, verify code, OpenSSL's reason, what the case is
local ACCEPTED = {
  { "good", "localhost", "a DNS SAN" },
  { "good", "127.0.0.1", "an IPv4 SAN" },
  { "good", "::1", "an IPv6 SAN" },
  { "wildcard", "a.wild.test", "*.wild.test for one label" },
  { "ipsan", "127.0.0.1", "one of two IP SANs" },
  { "ipv6", "::1", "an IPv6-only SAN" },
  { "allowed", "host.allowed.test", "a name inside the intermediate's permitted subtree" },
  { "serveronly", "localhost", "extendedKeyUsage serverAuth alone" },
  -- OpenSSL accepts keyAgreement in place of digitalSignature for a TLS
  -- server (its KU_TLS rule), even in TLS 1.3: documented, not endorsed
  { "keyagreement", "localhost", "keyUsage keyAgreement alone (OpenSSL's rule)" },
}

local REJECTED = {
  { "expired", "localhost", 10, "certificate has expired", "a leaf past its notAfter" },
  { "notyet", "localhost", 9, "certificate is not yet valid", "a leaf before its notBefore" },
  { "underexpired", "localhost", 10, "certificate has expired", "a good leaf under an expired intermediate" },
  { "wronghost", "localhost", 62, "hostname mismatch", "a SAN for another name" },
  { "cnonly", "localhost", 62, "hostname mismatch", "the name only in the CN, no SAN (never checked)" },
  { "wildcard", "a.b.wild.test", 62, "hostname mismatch", "*.wild.test for two labels" },
  { "wildcard", "wild.test", 62, "hostname mismatch", "*.wild.test for the bare domain" },
  { "partialwildcard", "foo.wild.test", 62, "hostname mismatch", "a partial wildcard f*.wild.test" },
  { "innerwildcard", "a.b.wild.test", 62, "hostname mismatch", "a wildcard not leftmost: a.*.wild.test" },
  { "tldwildcard", "x.test", 62, "hostname mismatch", "a wildcard over a top-level domain: *.test" },
  { "otherip", "127.0.0.1", 64, "IP address mismatch", "an IP SAN for another address" },
  { "dnsip", "127.0.0.1", 64, "IP address mismatch", "the address as a DNS SAN, not an IP SAN" },
  { "ipv6", "127.0.0.1", 64, "IP address mismatch", "an IPv6 SAN for an IPv4 address" },
  { "notallowed", "host.evil.test", 47, "permitted subtree violation",
    "a name outside the intermediate's permitted subtree" },
  { "excluded", "host.forbidden.allowed.test", 48, "excluded subtree violation",
    "a name inside the intermediate's excluded subtree" },
  { "incomplete", "localhost", 20, "unable to get local issuer certificate",
    "a server that leaves its intermediate out" },
  { "untrusted", "localhost", 20, "unable to get local issuer certificate", "a chain to an unknown root" },
  { "untrustedwithroot", "localhost", 19, "self-signed certificate in certificate chain",
    "a chain that includes an unknown root" },
  { "selfsigned", "localhost", 18, "self-signed certificate", "a self-signed leaf" },
  { "caleaf", "localhost", 26, "unsuitable certificate purpose", "a CA certificate as the server's own" },
  { "clientonly", "localhost", 26, "unsuitable certificate purpose", "extendedKeyUsage clientAuth alone" },
  { "wrongku", "localhost", 26, "unsuitable certificate purpose", "keyUsage nonRepudiation alone" },
  { "pathtoolong", "localhost", 25, "path length constraint exceeded",
    "a sub-intermediate under an intermediate with pathlen 0" },
}

-- Cases the server itself refuses at OpenSSL's default security level: the
-- server needs SECLEVEL=0 to offer them, and the client still rejects them.
local WEAK = {
  { "sha1", 68, "CA signature digest algorithm too weak", "ca md too weak", "a leaf signed with SHA-1" },
  { "weakkey", 66, "EE certificate key too weak", "ee key too small", "a 1024-bit RSA key" },
}

describe("certificate corpus", function()
  it("is generated and committed", function()
    for _, case in ipairs(REJECTED) do
      assert.is_truthy(io.open(D .. case[1] .. ".pem"), case[1])
    end
    assert.is_truthy(io.open(D .. "root.pem"))
  end)

  describe("accepted", function()
    for _, case in ipairs(ACCEPTED) do
      local name, host, what = case[1], case[2], case[3]
      it(("%s: %s as %s"):format(what, name, host), function()
        local result, p = connect(name, host)
        assert.equal("done", result.client.status, result.client.message)
        assert.same({ 0, "ok" }, { p.client.conn:verify_result() })
        assert.equal("hi", p:send(p.client, "hi"))
      end)
    end
  end)

  describe("rejected with the verify code and OpenSSL's reason", function()
    for _, case in ipairs(REJECTED) do
      local name, host, code, reason, what = table.unpack(case)
      it(("%s: %d %q (%s as %s)"):format(what, code, reason, name, host), function()
        local result, p = connect(name, host)
        local message = "do_handshake: certificate verify failed: " .. reason
        assert.same({ nil, "verify" }, { result.client.status, result.client.code })
        -- a name mismatch also says what was expected and what the certificate names
        assert.equal(message, result.client.message:sub(1, #message))
        if code == 62 or code == 64 then
          assert.matches(" %(expected '" .. host:gsub("%p", "%%%0") .. "'; the certificate ", result.client.message)
        else
          assert.equal(message, result.client.message)
        end
        assert.same({ code, reason }, { p.client.conn:verify_result() })
        -- the server learns it from the client's alert: a protocol failure
        -- naming the alert, never a hang
        assert.equal("protocol", result.server.code)
        assert.matches("^do_handshake: .*alert", result.server.message)
      end)
    end

    for _, case in ipairs(WEAK) do
      local name, code, reason, server_reason, what = table.unpack(case)
      it(("%s: refused by the server's own context (%q) and by the client: %d %q"):format(
        what, server_reason, code, reason), function()
        local ctx, message, config = tls.new_context { mode = "server", certificate = D .. name .. ".pem",
                                                       key = D .. name .. ".key" }
        assert.is_nil(ctx)
        assert.equal(("certificate: %s%s.pem: %s"):format(D, name, server_reason), message)
        assert.equal("config", config)
        local result, p = connect(name, "localhost", { ciphers = "DEFAULT:@SECLEVEL=0" })
        assert.same({ nil, "do_handshake: certificate verify failed: " .. reason, "verify" },
                    { result.client.status, result.client.message, result.client.code })
        assert.same({ code, reason }, { p.client.conn:verify_result() })
      end)
    end
  end)

  describe("client certificates, checked by a server with verify = 'require'", function()
    local CASES = {
      { "good", 0, nil },
      { "expired", 10, "certificate has expired" },
      { "serveronly", 26, "unsuitable certificate purpose" },
      { "untrusted", 20, "unable to get local issuer certificate" },
      { "incomplete", 20, "unable to get local issuer certificate" },
      { "selfsigned", 18, "self-signed certificate" },
    }
    for _, case in ipairs(CASES) do
      local name, code, reason = table.unpack(case)
      it(("%s client certificate: %d %s"):format(name, code, reason or "ok"), function()
        local server_ctx = server_context("good", { verify = "require", cafile = D .. "root.pem" })
        local client_ctx = client_context { certificate = D .. name .. ".pem", key = D .. name .. ".key" }
        local p = pair.new { client_ctx = client_ctx, server_ctx = server_ctx }
        local result = p:handshake()
        assert.equal(code, (p.server.conn:verify_result()))
        if code == 0 then
          assert.equal("done", result.server.status)
          return
        end
        assert.same({ nil, "do_handshake: certificate verify failed: " .. reason, "verify" },
                    { result.server.status, result.server.message, result.server.code })
        -- TLS 1.3: the client finished before the server checked it; it
        -- learns the verdict from the server's alert, at its first read
        assert.equal("done", result.client.status)
        local data, message, failure = p.client.conn:read()
        assert.is_nil(data)
        assert.equal("protocol", failure)
        assert.matches("^read: .*alert", message)
      end)
    end

    it("no client certificate at all: 'peer did not return a certificate'", function()
      local server_ctx = server_context("good", { verify = "require", cafile = D .. "root.pem" })
      local p = pair.new { client_ctx = client_context(), server_ctx = server_ctx }
      local result = p:handshake()
      assert.same({ nil, "do_handshake: peer did not return a certificate", "verify" },
                  { result.server.status, result.server.message, result.server.code })
    end)
  end)
end)
