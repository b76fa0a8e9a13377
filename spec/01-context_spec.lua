-- tls.new_context(opts): every option, proved by a handshake with an
-- in-process peer where the option changes what the peer sees.

local tls = require "lunatls"
local pair = require "helpers.pair"
local certs = require "helpers.certs"

local F = pair.fixture

--- Runs a handshake over a new pair made with `opts` (see pair.new).
local function handshake(opts)
  local p = pair.new(opts)
  return p:handshake(), p
end

local function server_with(name)
  return pair.server_context { certificate = F(name .. ".pem"), key = F(name .. ".key") }
end

describe("new_context", function()
  teardown(certs.cleanup)

  describe("mode", function()
    it("makes client and server contexts", function()
      local client = assert(tls.new_context { mode = "client" })
      local server = assert(tls.new_context { mode = "server" })
      assert.equal("client", client:mode())
      assert.equal("server", server:mode())
      assert.matches("^lunatls.Context: 0x%x+ %(server%)$", tostring(server))
    end)

    it("is required and must be client or server", function()
      pair.assert_bad_argument(function() tls.new_context {} end, 1, "new_context", "option 'mode' is required")
      pair.assert_bad_argument(function() tls.new_context { mode = "both" } end, 1, "new_context",
        "option 'mode': invalid value 'both' (expected 'client' or 'server')")
      pair.assert_bad_argument(function() tls.new_context("client") end, 1, "new_context", "table expected, got string")
    end)
  end)

  describe("option checking", function()
    it("raises on an unknown key, naming it", function()
      pair.assert_bad_argument(function() tls.new_context { mode = "client", verfiy = "none" } end, 1, "new_context", "unknown option 'verfiy'")
      pair.assert_bad_argument(function() tls.new_context { mode = "client", "positional" } end, 1, "new_context", "unknown option '1'")
    end)

    -- option, bad value, the error's parenthesis
    local bad_types = {
      { "certificate", 1, "option 'certificate': string expected, got number" },
      { "key", {}, "option 'key': string expected, got table" },
      { "password", 1, "option 'password': string or function expected, got number" },
      { "ca", true, "option 'ca': string expected, got boolean" },
      { "cafile", 1, "option 'cafile': string expected, got number" },
      { "capath", false, "option 'capath': string expected, got boolean" },
      { "verify", true, "option 'verify': string expected, got boolean" },
      { "verify", "maybe", "option 'verify': invalid value 'maybe' (expected 'none', 'peer' or 'require')" },
      { "verify_depth", "x", "option 'verify_depth': integer from 0 to 100 expected, got string" },
      { "verify_depth", -1, "option 'verify_depth': integer from 0 to 100 expected, got number" },
      { "verify_flags", "x509_strict", "option 'verify_flags': list of strings expected, got string" },
      { "verify_flags", { "nope" }, "option 'verify_flags': invalid value 'nope' (expected 'x509_strict', "
        .. "'partial_chain', 'crl_check' or 'crl_check_all')" },
      { "verify_flags", { 1 }, "option 'verify_flags': list of strings expected, got number" },
      { "check_hostname", "no", "option 'check_hostname': boolean expected, got string" },
      { "min_version", "tls9", "option 'min_version': invalid value 'tls9' (expected 'tls1.0', "
        .. "'tls1.1', 'tls1.2', 'tls1.3', 'TLSv1', 'TLSv1.1', 'TLSv1.2' or 'TLSv1.3')" },
      { "max_version", 13, "option 'max_version': string expected, got number" },
      { "ciphers", 1, "option 'ciphers': string expected, got number" },
      { "ciphersuites", {}, "option 'ciphersuites': string expected, got table" },
      { "groups", true, "option 'groups': string expected, got boolean" },
      { "alpn", "h2", "option 'alpn': list of strings expected, got string" },
      { "alpn", { 2 }, "option 'alpn': list of strings expected, got number" },
      { "alpn", { "" }, "option 'alpn': protocol names are strings of 1 to 255 bytes" },
      { "keylog", true, "option 'keylog': function expected, got boolean" },
      { "servername", "localhost", "option 'servername': function expected, got string" },
      { "session_cache", "yes", "option 'session_cache': boolean expected, got string" },
      { "tickets", 1, "option 'tickets': boolean expected, got number" },
    }
    for _, case in ipairs(bad_types) do
      local name, value, reason = case[1], case[2], case[3]
      it(("raises on a bad %s (%s)"):format(name, tostring(value)), function()
        local opts = { mode = "server", [name] = value }
        pair.assert_bad_argument(function() tls.new_context(opts) end, 1, "new_context", reason)
      end)
    end

    it("refuses servername on a client", function()
      pair.assert_bad_argument(function() tls.new_context { mode = "client", servername = print } end, 1, "new_context", "option 'servername' is for servers")
    end)
  end)

  describe("certificate and key", function()
    it("load from paths", function()
      local result, p = handshake { server_ctx = pair.server_context {
        certificate = F"server.pem", key = F"server.key" } }
      assert.equal("done", result.client.status)
      assert.equal("CN=localhost,O=lunatls tests", p.client.conn:peer_certificate():subject())
    end)

    it("load from PEM text", function()
      local ctx = assert(tls.new_context { mode = "server",
        certificate = pair.read_fixture("server.pem"), key = pair.read_fixture("server.key") })
      local result, p = handshake { server_ctx = ctx }
      assert.equal("done", result.client.status)
      assert.equal(certs.openssl_fingerprint(F"server.pem"),
        p.client.conn:peer_certificate():fingerprint())
    end)

    it("send the whole chain of server-chain.pem", function()
      local result, p = handshake { server_ctx = pair.server_context {
        certificate = F"server-chain.pem" } }
      assert.equal("done", result.client.status)
      local chain = p.client.conn:peer_chain()
      assert.equal(2, #chain)
      assert.equal("CN=localhost,O=lunatls tests", chain[1]:subject())
      assert.equal("CN=lunatls test CA,O=lunatls tests", chain[2]:subject())
    end)

    it("load a whole chain and its key from PEM text", function()
      local ctx = assert(tls.new_context { mode = "server",
        certificate = pair.read_fixture("server-chain.pem"), key = pair.read_fixture("server.key") })
      local _, p = handshake { server_ctx = ctx }
      assert.equal(2, #p.client.conn:peer_chain())
    end)

    it("find the certificate and the key in one PEM text holding both", function()
      local both = pair.read_fixture("server.key") .. pair.read_fixture("server.pem")
      local ctx = assert(tls.new_context { mode = "server", certificate = both, key = both })
      assert.equal("done", handshake { server_ctx = ctx }.client.status)
    end)

    it("send only the leaf of server.pem", function()
      local _, p = handshake {}
      assert.equal(1, #p.client.conn:peer_chain())
    end)

    it("give nil, message, 'config' for a missing certificate file", function()
      assert.same({ nil, "certificate: /nonexistent/cert.pem: No such file or directory", "config" },
        { tls.new_context { mode = "server", certificate = "/nonexistent/cert.pem" } })
    end)

    it("give nil, message, 'config' for a missing key file", function()
      assert.same({ nil, "key: /nonexistent/key.pem: No such file or directory", "config" },
        { tls.new_context { mode = "server", certificate = F"server.pem", key = "/nonexistent/key.pem" } })
    end)

    it("give nil, message, 'config' for a file that is not PEM", function()
      local ok, message, code = tls.new_context { mode = "server", certificate = F"gen.sh" }
      assert.is_nil(ok)
      assert.equal("config", code)
      assert.equal("certificate: spec/fixtures/gen.sh: no certificate found", message)
    end)

    it("give nil, message, 'config' for bad PEM text", function()
      local bad_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
      local ok, message, code = tls.new_context { mode = "server", certificate = bad_cert }
      assert.is_nil(ok)
      assert.equal("config", code)
      assert.matches("^certificate: PEM text: .+", message)
      local bad_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
      ok, message, code = tls.new_context { mode = "server", certificate = F"server.pem", key = bad_key }
      assert.is_nil(ok)
      assert.equal("config", code)
      assert.matches("^key: PEM text: .+", message)
    end)

    it("give nil, message, 'config' for a key that does not match the certificate", function()
      assert.same({ nil, "key: spec/fixtures/client.key: key values mismatch", "config" },
        { tls.new_context { mode = "server", certificate = F"server.pem", key = F"client.key" } })
    end)
  end)

  describe("password", function()
    local function encrypted(password)
      return tls.new_context { mode = "server", certificate = F"server.pem",
                               key = F"server-encrypted.key", password = password }
    end

    it("decrypts the key given as a string", function()
      local ctx = assert(encrypted("secret"))
      assert.equal("done", handshake { server_ctx = ctx }.client.status)
    end)

    it("decrypts the key given by a function", function()
      local calls = 0
      local ctx = assert(encrypted(function()
        calls = calls + 1
        return "secret"
      end))
      assert.equal(1, calls)
      assert.equal("done", handshake { server_ctx = ctx }.client.status)
    end)

    it("decrypts an encrypted key given as PEM text", function()
      local ctx = assert(tls.new_context { mode = "server", certificate = F"server.pem",
        key = pair.read_fixture("server-encrypted.key"), password = "secret" })
      assert.equal("done", handshake { server_ctx = ctx }.client.status)
    end)

    it("gives nil, message, 'config' for a wrong password", function()
      assert.same({ nil, "key: spec/fixtures/server-encrypted.key: bad decrypt (maybe wrong password)",
                    "config" }, { encrypted("wrong") })
      assert.same({ nil, "key: spec/fixtures/server-encrypted.key: bad decrypt (maybe wrong password)",
                    "config" }, { encrypted(function() return "wrong" end) })
    end)

    it("gives nil, message, 'config' when there is none (and never prompts)", function()
      assert.same({ nil, "key: spec/fixtures/server-encrypted.key: bad decrypt (empty password)",
                    "config" }, { encrypted(nil) })
    end)

    it("lets an error raised by the function propagate", function()
      assert.has_error(function() encrypted(function() error("no vault", 0) end) end, "no vault")
      local token = {}
      local ok, err = pcall(encrypted, function() error(token) end)
      assert.is_false(ok)
      assert.equal(token, err)
    end)
  end)

  describe("trust", function()
    it("takes CAs as PEM text (ca)", function()
      local ctx = assert(tls.new_context { mode = "client", ca = pair.read_fixture("ca.pem") })
      assert.equal("done", handshake { client_ctx = ctx }.client.status)
    end)

    it("takes several CAs in one PEM text", function()
      local ctx = assert(tls.new_context { mode = "client",
        ca = pair.read_fixture("otherca.pem") .. pair.read_fixture("ca.pem") })
      assert.equal("done", handshake { client_ctx = ctx }.client.status)
      assert.equal("done", handshake { client_ctx = ctx, server_ctx = server_with("untrusted") }.client.status)
    end)

    it("takes a CA file (cafile)", function()
      local ctx = assert(tls.new_context { mode = "client", cafile = F"ca.pem" })
      assert.equal("done", handshake { client_ctx = ctx }.client.status)
    end)

    it("takes a hashed CA folder (capath)", function()
      local ctx = assert(tls.new_context { mode = "client", capath = F"capath" })
      assert.equal("done", handshake { client_ctx = ctx }.client.status)
    end)

    it("trusts only what it is given", function()
      local ctx = assert(tls.new_context { mode = "client", cafile = F"otherca.pem" })
      local result = handshake { client_ctx = ctx }
      assert.equal("verify", result.client.code)
      assert.equal("do_handshake: certificate verify failed: unable to get local issuer certificate",
        result.client.message)
    end)

    it("loads the system store by default (which does not know the test CA)", function()
      local ctx = assert(tls.new_context { mode = "client" })
      local result = handshake { client_ctx = ctx }
      assert.equal("verify", result.client.code)
      assert.equal("do_handshake: certificate verify failed: unable to get local issuer certificate",
        result.client.message)
    end)

    it("gives nil, message, 'config' for bad CA text, a missing cafile or capath", function()
      assert.same({ nil, "ca: PEM text: no certificate found", "config" },
        { tls.new_context { mode = "client", ca = "not a certificate" } })
      assert.same({ nil, "cafile: /nonexistent/ca.pem: No such file or directory", "config" },
        { tls.new_context { mode = "client", cafile = "/nonexistent/ca.pem" } })
      assert.same({ nil, "capath: /nonexistent/certs: No such file or directory", "config" },
        { tls.new_context { mode = "client", capath = "/nonexistent/certs" } })
      assert.same({ nil, "capath: spec/fixtures/ca.pem: not a directory", "config" },
        { tls.new_context { mode = "client", capath = F"ca.pem" } })
    end)
  end)

  describe("verify", function()
    it("'none' on a client accepts a self-signed server and still reports the result", function()
      local ctx = assert(tls.new_context { mode = "client", verify = "none" })
      local result, p = handshake { client_ctx = ctx, client = {}, server_ctx = server_with("selfsigned") }
      assert.equal("done", result.client.status)
      assert.same({ 18, "self-signed certificate" }, { p.client.conn:verify_result() })
    end)

    it("'peer' (the client default) refuses a self-signed server", function()
      local result = handshake { server_ctx = server_with("selfsigned") }
      assert.equal("verify", result.client.code)
      assert.equal("do_handshake: certificate verify failed: self-signed certificate", result.client.message)
    end)

    it("'none' (the server default) asks no client certificate", function()
      local client_ctx = pair.client_context { certificate = F"client.pem", key = F"client.key" }
      local result, p = handshake { client_ctx = client_ctx }
      assert.equal("done", result.server.status)
      assert.is_nil(p.server.conn:peer_certificate())
    end)

    it("'peer' on a server asks for a client certificate but does not demand one", function()
      local server_ctx = pair.server_context { verify = "peer", cafile = F"ca.pem" }
      local result, p = handshake { server_ctx = server_ctx }
      assert.equal("done", result.server.status)
      assert.is_nil(p.server.conn:peer_certificate())
      local client_ctx = pair.client_context { certificate = F"client.pem", key = F"client.key" }
      result, p = handshake { server_ctx = server_ctx, client_ctx = client_ctx }
      assert.equal("done", result.server.status)
      assert.equal("CN=lunatls test client,O=lunatls tests", p.server.conn:peer_certificate():subject())
      assert.same({ 0, "ok" }, { p.server.conn:verify_result() })
    end)

    it("verify_depth limits the chain (0 refuses a leaf under an intermediate, 1 accepts it)", function()
      local chains = certs.intermediate_chains()
      local server_ctx = pair.server_context { certificate = chains.chain, key = chains.key }
      local result = handshake { server_ctx = server_ctx, client_ctx = pair.client_context { verify_depth = 0 } }
      assert.equal("verify", result.client.code)
      assert.equal("do_handshake: certificate verify failed: certificate chain too long", result.client.message)
      result = handshake { server_ctx = server_ctx, client_ctx = pair.client_context { verify_depth = 1 } }
      assert.equal("done", result.client.status)
    end)

    it("verify_flags partial_chain lets a trusted leaf stand alone", function()
      local result = handshake { client_ctx = pair.client_context { cafile = F"server.pem" } }
      assert.equal("verify", result.client.code)
      result = handshake { client_ctx = pair.client_context { cafile = F"server.pem",
                                                              verify_flags = { "partial_chain" } } }
      assert.equal("done", result.client.status)
    end)

    it("verify_flags x509_strict rejects a CA without keyUsage that is otherwise accepted", function()
      local chains = certs.intermediate_chains()
      local server_ctx = pair.server_context { certificate = chains.loose_chain, key = chains.key }
      assert.equal("done", handshake { server_ctx = server_ctx }.client.status)
      local result = handshake { server_ctx = server_ctx,
                                 client_ctx = pair.client_context { verify_flags = { "x509_strict" } } }
      assert.equal("verify", result.client.code)
      assert.equal("do_handshake: certificate verify failed: CA cert does not include key usage extension",
        result.client.message)
      -- a well-formed chain passes the strict checks
      server_ctx = pair.server_context { certificate = chains.chain, key = chains.key }
      result = handshake { server_ctx = server_ctx,
                           client_ctx = pair.client_context { verify_flags = { "x509_strict" } } }
      assert.equal("done", result.client.status)
    end)
  end)

  describe("check_hostname", function()
    it("is on by default: a client connection needs a server_name", function()
      local ctx = pair.client_context()
      pair.assert_bad_argument(function() ctx:new_conn() end, 1, "new_conn", "option 'server_name' is required to verify the server's "
        .. "host name (or create the context with check_hostname = false)")
    end)

    it("= false accepts a certificate for another host, with or without server_name", function()
      local ctx = pair.client_context { check_hostname = false }
      local server_ctx = server_with("wronghost")
      local result, p = handshake { client_ctx = ctx, client = {}, server_ctx = server_ctx }
      assert.equal("done", result.client.status)
      assert.same({ 0, "ok" }, { p.client.conn:verify_result() })
      result, p = handshake { client_ctx = ctx, server_ctx = server_ctx }
      assert.equal("done", result.client.status)
      assert.equal("localhost", p.server.conn:server_name()) -- still sent as SNI
    end)

    it("= false still verifies the chain", function()
      local ctx = pair.client_context { check_hostname = false }
      local result = handshake { client_ctx = ctx, client = {}, server_ctx = server_with("untrusted") }
      assert.equal("verify", result.client.code)
    end)
  end)

  describe("min_version and max_version", function()
    it("negotiate TLS 1.3 by default", function()
      local _, p = handshake {}
      assert.equal("TLSv1.3", p.client.conn:version())
      assert.equal("TLSv1.3", p.server.conn:version())
    end)

    it("negotiate TLS 1.2 when the client's max is tls1.2", function()
      local _, p = handshake { client_ctx = pair.client_context { max_version = "tls1.2" } }
      assert.equal("TLSv1.2", p.client.conn:version())
      assert.equal("TLSv1.2", p.server.conn:version())
    end)

    it("negotiate TLS 1.2 when the server's max is tls1.2", function()
      local _, p = handshake { server_ctx = pair.server_context { max_version = "tls1.2" } }
      assert.equal("TLSv1.2", p.server.conn:version())
    end)

    it("fail with 'protocol' when a TLS 1.3-only client meets a TLS 1.2-only server", function()
      local result = handshake { client_ctx = pair.client_context { min_version = "tls1.3" },
                                 server_ctx = pair.server_context { max_version = "tls1.2" } }
      assert.equal("protocol", result.client.code)
      assert.equal("protocol", result.server.code)
    end)

    it("give nil, message, 'config' when max is lower than min", function()
      assert.same({ nil, "max_version: lower than min_version", "config" },
        { tls.new_context { mode = "client", min_version = "tls1.3", max_version = "tls1.2" } })
    end)
  end)

  describe("algorithms", function()
    it("ciphers chooses the TLS 1.2 cipher", function()
      for _, cipher in ipairs { "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256" } do
        local _, p = handshake { client_ctx = pair.client_context { max_version = "tls1.2", ciphers = cipher } }
        assert.equal(cipher, p.client.conn:cipher())
        assert.equal(cipher, p.server.conn:cipher())
      end
    end)

    it("ciphersuites chooses the TLS 1.3 suite", function()
      for _, suite in ipairs { "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256" } do
        local _, p = handshake { server_ctx = pair.server_context { ciphersuites = suite } }
        assert.equal(suite, p.client.conn:cipher())
        assert.equal(suite, p.server.conn:cipher())
      end
    end)

    it("groups constrains the key exchange (no common group: 'protocol')", function()
      local result = handshake { client_ctx = pair.client_context { groups = "P-384" },
                                 server_ctx = pair.server_context { groups = "X25519" } }
      assert.equal("protocol", result.server.code)
      assert.equal("do_handshake: no suitable key share", result.server.message)
      result = handshake { client_ctx = pair.client_context { groups = "P-384" },
                           server_ctx = pair.server_context { groups = "X25519:P-384" } }
      assert.equal("done", result.client.status)
    end)

    it("give nil, message, 'config' for lists OpenSSL rejects", function()
      assert.same({ nil, "ciphers: NOPE: no cipher match", "config" },
        { tls.new_context { mode = "client", ciphers = "NOPE" } })
      assert.same({ nil, "ciphersuites: NOPE: no cipher match", "config" },
        { tls.new_context { mode = "client", ciphersuites = "NOPE" } })
      assert.same({ nil, "groups: NOPE: group 'NOPE' cannot be set", "config" },
        { tls.new_context { mode = "client", groups = "NOPE" } })
    end)
  end)

  describe("alpn", function()
    it("picks the server's preferred protocol among the client's offer", function()
      local _, p = handshake { client_ctx = pair.client_context { alpn = { "h2", "http/1.1" } },
                               server_ctx = pair.server_context { alpn = { "http/1.1", "h2" } } }
      assert.equal("http/1.1", p.client.conn:alpn_selected())
      assert.equal("http/1.1", p.server.conn:alpn_selected())
      _, p = handshake { client_ctx = pair.client_context { alpn = { "http/1.1", "h2" } },
                         server_ctx = pair.server_context { alpn = { "h2", "http/1.1" } } }
      assert.equal("h2", p.client.conn:alpn_selected())
    end)

    it("selects nothing (and does not fail) when the lists do not overlap", function()
      local result, p = handshake { client_ctx = pair.client_context { alpn = { "h2" } },
                                    server_ctx = pair.server_context { alpn = { "http/1.1" } } }
      assert.equal("done", result.client.status)
      assert.is_nil(p.client.conn:alpn_selected())
      assert.is_nil(p.server.conn:alpn_selected())
    end)

    it("is nil before the handshake and when only one side speaks it", function()
      local result, p = handshake { client_ctx = pair.client_context { alpn = { "h2" } } }
      assert.equal("done", result.client.status)
      assert.is_nil(p.client.conn:alpn_selected())
      assert.is_nil(pair.client_context { alpn = { "h2" } }:new_conn { server_name = "x" }:alpn_selected())
    end)

    it("is overridden per connection by new_conn{alpn=}", function()
      local _, p = handshake {
        client_ctx = pair.client_context { alpn = { "h2" } },
        client = { server_name = "localhost", alpn = { "spdy/3", "http/1.1" } },
        server_ctx = pair.server_context { alpn = { "h2", "http/1.1" } },
      }
      assert.equal("http/1.1", p.client.conn:alpn_selected())
    end)
  end)

  describe("servername", function()
    it("switches the certificate by SNI", function()
      local names = {}
      local localhost = pair.server_context()
      local server_ctx = pair.server_context {
        certificate = F"wronghost.pem", key = F"wronghost.key",
        servername = function(name)
          names[#names + 1] = name
          if name == "localhost" then return localhost end
        end,
      }
      local result, p = handshake { server_ctx = server_ctx }
      assert.equal("done", result.client.status)
      assert.same({ "localhost" }, names)
      assert.equal("localhost", p.server.conn:server_name())
      assert.same({ "localhost", "127.0.0.1", "::1" }, p.client.conn:peer_certificate():subject_alt_names())
      -- another name keeps the default certificate
      local ctx = pair.client_context { check_hostname = false }
      result, p = handshake { server_ctx = server_ctx, client_ctx = ctx, client = { server_name = "other.example" } }
      assert.equal("done", result.client.status)
      assert.same({ "localhost", "other.example" }, names)
      assert.same({ "wrong.example" }, p.client.conn:peer_certificate():subject_alt_names())
    end)

    it("applies the chosen context's verify mode and trust (a virtual host demanding client certificates)", function()
      local strict = pair.server_context { verify = "require", cafile = F"ca.pem" }
      local front = pair.server_context { servername = function() return strict end }
      local result = handshake { server_ctx = front }
      assert.equal("verify", result.server.code)
      assert.equal("do_handshake: peer did not return a certificate", result.server.message)
      local client_ctx = pair.client_context { certificate = F"client.pem", key = F"client.key" }
      local p
      result, p = handshake { server_ctx = front, client_ctx = client_ctx }
      assert.equal("done", result.server.status)
      assert.equal("CN=lunatls test client,O=lunatls tests", p.server.conn:peer_certificate():subject())
      -- and the other way round: a relaxed virtual host behind a strict default
      local relaxed = pair.server_context()
      local strict_front = pair.server_context { verify = "require", cafile = F"ca.pem",
                                                 servername = function() return relaxed end }
      result = handshake { server_ctx = strict_front }
      assert.equal("done", result.server.status)
    end)

    it("refuses the name when the function returns false", function()
      local result = handshake { server_ctx = pair.server_context { servername = function() return false end } }
      assert.equal("protocol", result.client.code)
      assert.equal("do_handshake: tlsv1 unrecognized name", result.client.message)
      assert.equal("protocol", result.server.code)
    end)

    it("propagates an error the function raises out of do_handshake", function()
      local p = pair.new { server_ctx = pair.server_context {
        servername = function() error("no such tenant", 0) end } }
      assert.has_error(function() p:handshake() end, "no such tenant")
    end)

    it("raises when the function returns something else than a server context", function()
      for _, value in ipairs { 42, pair.client_context() } do
        local p = pair.new { server_ctx = pair.server_context { servername = function() return value end } }
        assert.has_error(function() p:handshake() end,
          "servername callback must return a server lunatls.Context, nil or false")
      end
    end)
  end)

  describe("keylog", function()
    local function collect(into, prefix)
      return function(line) into[#into + 1] = prefix .. line end
    end

    it("receives the five TLS 1.3 secrets on each side, for the same client random", function()
      local lines = {}
      local _, p = handshake {
        client_ctx = pair.client_context { keylog = collect(lines, "client ") },
        server_ctx = pair.server_context { keylog = collect(lines, "server ") },
      }
      assert.equal("TLSv1.3", p.client.conn:version())
      local labels, randoms = { client = {}, server = {} }, {}
      for _, line in ipairs(lines) do
        local side, label, random, secret = line:match("^(%a+) ([%u_%d]+) (%x+) (%x+)$")
        assert.is_not_nil(side, line)
        assert.equal(64, #random)
        assert.is_true(#secret >= 64)
        labels[side][#labels[side] + 1] = label
        randoms[random] = true
      end
      table.sort(labels.client)
      table.sort(labels.server)
      local expected = { "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "EXPORTER_SECRET",
                         "SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0" }
      assert.same(expected, labels.client)
      assert.same(expected, labels.server)
      local distinct = 0
      for _ in pairs(randoms) do distinct = distinct + 1 end
      assert.equal(1, distinct) -- both sides log the same handshake
    end)

    it("receives CLIENT_RANDOM lines in TLS 1.2", function()
      local lines = {}
      handshake { client_ctx = pair.client_context { max_version = "tls1.2", keylog = collect(lines, "") } }
      assert.equal(1, #lines)
      assert.matches("^CLIENT_RANDOM %x+ %x+$", lines[1])
    end)

    it("propagates an error the function raises out of do_handshake", function()
      local p = pair.new { client_ctx = pair.client_context { keylog = function() error("disk full", 0) end } }
      assert.has_error(function() p:handshake() end, "disk full")
    end)
  end)
end)
