-- Server and client features beyond the anchors (issue 13): ALPN chosen by
-- a function, channel bindings, the negotiated group, security level,
-- signature algorithms, the client-CA list, keylog = "env". In-process
-- peers, and openssl s_client on 127.0.0.1.

local tls = require "lunatls"
local pair = require "helpers.pair"
local link = require "helpers.link"
local process = require "helpers.process"

local F = pair.fixture

local function wronghost(opts) return pair.server_context_with("wronghost", opts) end

local function connected(server_opts, client_opts, conn_opts)
  return pair.new { server_ctx = pair.server_context(server_opts), client_ctx = pair.client_context(client_opts),
                    client = conn_opts }:connect()
end

describe("alpn as a function", function()
  it("receives the offered list and chooses", function()
    local offered
    local p = connected({ alpn = function(list) offered = list; return list[2] end },
      { alpn = { "h2", "http/1.1", "x" } })
    assert.same({ "h2", "http/1.1", "x" }, offered)
    assert.equal("http/1.1", p.client.conn:alpn_selected())
    assert.equal("http/1.1", p.server.conn:alpn_selected())
  end)

  it("nil: no ALPN", function()
    local p = connected({ alpn = function() return nil end }, { alpn = { "h2" } })
    assert.is_nil(p.client.conn:alpn_selected())
  end)

  it("false: refuses the client with no_application_protocol", function()
    local p = pair.new { server_ctx = pair.server_context { alpn = function() return false end },
                         client_ctx = pair.client_context { alpn = { "h2" } } }
    local result = p:handshake()
    assert.equal("protocol", result.server.code)
    assert.matches("no application protocol", result.client.message)
  end)

  it("a name the client did not offer is the function's error", function()
    local p = pair.new { server_ctx = pair.server_context { alpn = function() return "spdy" end },
                         client_ctx = pair.client_context { alpn = { "h2" } } }
    p.client.conn:do_handshake()
    p:pump()
    local ok, err = pcall(p.server.conn.do_handshake, p.server.conn)
    assert.is_false(ok)
    assert.matches("alpn function returned 'spdy', which the client did not offer", err)
    local _, _, code = p.server.conn:do_handshake()
    assert.equal("callback", code)
  end)

  it("is for servers", function()
    pair.assert_bad_argument(function() tls.new_context { mode = "client", alpn = function() end } end,
      1, "new_context", "option 'alpn': a function is for servers")
  end)

  it("chooses for openssl s_client", function()
    local listener, port = link.listen()
    local client = process.spawn(("timeout 30 stdbuf -oL openssl s_client -connect 127.0.0.1:%d "
      .. "-alpn one,two -CAfile %s"):format(port, F"ca.pem"), { stdin = "" })
    finally(function() client:kill(); listener:close() end)
    local sock = assert(link.accept(listener, 10))
    local conn = pair.server_context { alpn = function(list) return list[#list] end }:new_conn()
    local l = link.new(conn, sock)
    finally(function() l:close() end)
    assert.equal("done", l:handshake())
    assert.equal("two", conn:alpn_selected())
    assert.is_true(client:wait_output("ALPN protocol: two"))
  end)
end)

describe("channel bindings", function()
  for _, version in ipairs { "tls1.2", "tls1.3" } do
    it(version .. ": tls-exporter and tls-server-end-point are the same on both sides", function()
      local p = connected({ max_version = version }, { max_version = version })
      local c, s = p.client.conn, p.server.conn
      assert.equal(32, #c:channel_binding("tls-exporter"))
      assert.equal(c:channel_binding("tls-exporter"), s:channel_binding("tls-exporter"))
      assert.equal(c:export_keying_material("EXPORTER-Channel-Binding", 32), c:channel_binding("tls-exporter"))
      -- the fixture certificate is signed with ecdsa-with-SHA256: its SHA-256
      local end_point = c:channel_binding("tls-server-end-point")
      assert.equal(end_point, s:channel_binding("tls-server-end-point"))
      assert.equal(c:peer_certificate():fingerprint("sha256"), (end_point:gsub(".", function(b)
        return ("%02x"):format(b:byte()) end)))
    end)
  end

  it("tls-unique: TLS 1.2, the same on both sides, different per connection; nil on TLS 1.3", function()
    local p = connected({ max_version = "tls1.2" }, { max_version = "tls1.2" })
    local u = p.client.conn:channel_binding("tls-unique")
    assert.equal(12, #u)
    assert.equal(u, p.server.conn:channel_binding("tls-unique"))
    local q = connected({ max_version = "tls1.2" }, { max_version = "tls1.2" })
    assert.are_not.equal(u, q.client.conn:channel_binding("tls-unique"))
    local r = connected()
    assert.same({ nil, "channel_binding: tls-unique: not defined for TLS 1.3 (use tls-exporter)", "protocol" },
      { r.client.conn:channel_binding("tls-unique") })
  end)

  it("before the handshake, and for an unknown kind", function()
    local p = pair.new()
    assert.same({ nil, "channel_binding: tls-exporter: the handshake is not done", "protocol" },
      { p.client.conn:channel_binding("tls-exporter") })
    pair.assert_bad_argument(function() p.client.conn:channel_binding("tls-foo") end, 1, "channel_binding",
      "invalid option 'tls-foo'")
  end)
end)

describe("small things", function()
  it("conn:group() names the key exchange", function()
    local p = connected({ groups = "P-384" }, { groups = "P-384:X25519" })
    assert.equal("secp384r1", p.client.conn:group())
    assert.equal("secp384r1", p.server.conn:group())
    assert.is_nil(pair.new().client.conn:group())
  end)

  it("security_level: 5 refuses the fixture's 256-bit key", function()
    local ok, message, code = tls.new_context { mode = "server", security_level = 5,
                                                certificate = F"server.pem", key = F"server.key" }
    assert.is_nil(ok, message)
    assert.equal("config", code)
    pair.assert_bad_argument(function() tls.new_context { mode = "client", security_level = 9 } end, 1,
      "new_context", "option 'security_level': integer from 0 to 5 expected, got number")
  end)

  it("sigalgs: a server that signs only with ECDSA-P384-SHA384 cannot serve a P-256 key", function()
    local p = pair.new { server_ctx = pair.server_context { sigalgs = "ECDSA+SHA384" } }
    local result = p:handshake()
    assert.equal("protocol", result.server.code)
    local ok, _, code = tls.new_context { mode = "client", sigalgs = "NOPE+SHA1" }
    assert.is_nil(ok)
    assert.equal("config", code)
  end)

  it("client_ca: the CertificateRequest lists these names", function()
    local listener, port = link.listen()
    local client = process.spawn(("timeout 30 stdbuf -oL openssl s_client -connect 127.0.0.1:%d -CAfile %s")
      :format(port, F"ca.pem"), { stdin = "" })
    finally(function() client:kill(); listener:close() end)
    local sock = assert(link.accept(listener, 10))
    local conn = pair.server_context { verify = "peer", cafile = F"ca.pem", client_ca = F"otherca.pem" }:new_conn()
    local l = link.new(conn, sock)
    finally(function() l:close() end)
    l:handshake()
    assert.is_true(client:wait_output("Acceptable client certificate CA names"), client:output())
    assert.is_true(client:wait_output("CN = lunatls untrusted CA"), client:output())
  end)

  it("keylog = 'env' appends to $SSLKEYLOGFILE only when asked", function()
    local path = os.tmpname()
    local script = ([[
      package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
      package.cpath = "./build/?.so;" .. package.cpath
      local pair = require "helpers.pair"
      pair.new { client_ctx = pair.client_context { keylog = %s } }:connect()
    ]])
    local function run(keylog)
      local f = assert(io.popen(("SSLKEYLOGFILE=%s lua5.4 -e '%s' 2>&1"):format(path, script:format(keylog))))
      local out = f:read("a")
      assert.is_true(f:close(), out)
    end
    run("nil")
    local f = io.open(path)
    local before = f and f:read("a") or ""
    if f then f:close() end
    assert.equal("", before)
    run([["env"]])
    f = assert(io.open(path))
    local lines = f:read("a")
    f:close()
    os.remove(path)
    assert.matches("CLIENT_HANDSHAKE_TRAFFIC_SECRET", lines)
    pair.assert_bad_argument(function() tls.new_context { mode = "client", keylog = "stderr" } end, 1,
      "new_context", "option 'keylog': invalid value 'stderr' (expected 'env')")
  end)
end)

describe("ticket_keys: sessions across processes", function()
  local function key(seed) return (seed):rep(80):sub(1, 80) end
  local K1, K2 = key("a1"), key("b2")

  --- A session from a server made with `first`, offered to a server made
  -- with `second` (each a fresh context: another process would make its own).
  local function resumes(first, second, version)
    local cctx = pair.client_context { max_version = version }
    local p = pair.new { server_ctx = pair.server_context(first), client_ctx = cctx }:connect()
    assert(p:send(p.server, "x") == "x")
    p.client.conn:read()
    local session = p.client.conn:session()
    local q = pair.new { server_ctx = pair.server_context(second), client_ctx = cctx,
                         client = { server_name = "localhost", session = session } }:connect()
    return q.server.conn:session_reused()
  end

  for _, version in ipairs { "tls1.2", "tls1.3" } do
    it(version .. ": two contexts with the same keys and settings resume each other's sessions", function()
      assert.is_true(resumes({ ticket_keys = K1 }, { ticket_keys = K1 }, version))
      assert.is_false(resumes({}, {}, version)) -- without: random keys per context
    end)

    it(version .. ": rotation: a new key first, the old one still decrypts", function()
      assert.is_true(resumes({ ticket_keys = K1 }, { ticket_keys = { K2, K1 } }, version))
      assert.is_false(resumes({ ticket_keys = K1 }, { ticket_keys = K2 }, version))
    end)

    it(version .. ": contexts that differ in a setting never share sessions", function()
      assert.is_false(resumes({ ticket_keys = K1 }, { ticket_keys = K1, verify = "peer", cafile = F"ca.pem" }, version))
    end)
  end

  it("keys are 80 bytes, for servers", function()
    pair.assert_bad_argument(function() tls.new_context { mode = "server", ticket_keys = "short" } end, 1,
      "new_context", "option 'ticket_keys': keys are strings of exactly 80 bytes")
    pair.assert_bad_argument(function() tls.new_context { mode = "server", ticket_keys = {} } end, 1,
      "new_context", "option 'ticket_keys': a key or a list of at least one key expected")
    pair.assert_bad_argument(function() tls.new_context { mode = "client", ticket_keys = K1 } end, 1,
      "new_context", "option 'ticket_keys' is for servers")
  end)

  it("session_cache_size bounds the cache", function()
    assert.is_truthy(tls.new_context { mode = "server", session_cache_size = 100 })
    pair.assert_bad_argument(function() tls.new_context { mode = "server", session_cache_size = 0 } end, 1,
      "new_context", "option 'session_cache_size': integer from 1 expected, got number")
  end)
end)

describe("post-handshake client authentication (TLS 1.3)", function()
  it("the server asks after the handshake; the next exchange carries the client's certificate", function()
    local p = connected({ verify = "none", cafile = F"ca.pem" },
      { post_handshake_auth = true, certificate = F"client.pem", key = F"client.key" })
    assert.is_nil(p.server.conn:peer_certificate())
    assert.is_true(p.server.conn:verify_client_post_handshake())
    assert.equal("ping", p:send(p.server, "ping")) -- carries the CertificateRequest
    assert.equal("pong", p:send(p.client, "pong")) -- and the client's answer
    assert.equal("CN=lunatls test client,O=lunatls tests", p.server.conn:peer_certificate():subject())
    assert.same({ 0, "ok" }, { p.server.conn:verify_result() })
  end)

  it("a client that did not offer it: nil, message, 'protocol'", function()
    local p = connected({ cafile = F"ca.pem" }, {})
    local ok, message, code = p.server.conn:verify_client_post_handshake()
    assert.is_nil(ok)
    assert.equal("protocol", code)
    assert.matches("^verify_client_post_handshake: ", message)
  end)

  it("is for servers and clients respectively", function()
    local p = connected()
    assert.matches("calling 'verify_client_post_handshake' on bad self %(a server connection expected%)",
      pair.error_of(function() p.client.conn:verify_client_post_handshake() end))
    pair.assert_bad_argument(function() tls.new_context { mode = "server", post_handshake_auth = true } end, 1,
      "new_context", "option 'post_handshake_auth' is for clients")
  end)

  it("asks openssl s_client -enable_pha for its certificate", function()
    local listener, port = link.listen()
    local client = process.spawn(("timeout 30 stdbuf -oL openssl s_client -connect 127.0.0.1:%d -enable_pha "
      .. "-cert %s -key %s -CAfile %s -ign_eof"):format(port, F"client.pem", F"client.key", F"ca.pem"),
      { stdin = "hello\n" })
    finally(function() client:kill(); listener:close() end)
    local sock = assert(link.accept(listener, 10))
    local conn = pair.server_context { cafile = F"ca.pem" }:new_conn()
    local l = link.new(conn, sock)
    finally(function() l:close() end)
    assert.equal("done", l:handshake())
    assert.is_true(conn:verify_client_post_handshake())
    assert.equal(3, l:write_all("hi\n"))
    assert.equal("hello\n", l:read_until("\n"))
    for _ = 1, 50 do -- s_client answers the request when it reads it: maybe after its line
      if conn:peer_certificate() then break end
      l:fill(0.1)
      conn:read()
    end
    assert.equal("CN=lunatls test client,O=lunatls tests", conn:peer_certificate():subject())
  end)
end)

describe("certificates and keys in every form", function()
  local dir
  local function run(cmd)
    local f = assert(io.popen(cmd .. " 2>&1"))
    local out = f:read("a")
    assert(f:close(), out)
  end
  local function read(path)
    local f = assert(io.open(path, "rb"))
    local data = f:read("a")
    f:close()
    return data
  end

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    run("mkdir -p " .. dir)
    run(("openssl x509 -in %s -outform DER -out %s/server.der"):format(F"server.pem", dir))
    run(("openssl x509 -in %s -outform DER -out %s/ca.der"):format(F"ca.pem", dir))
    run(("openssl pkey -in %s -outform DER -out %s/server.key.der"):format(F"server.key", dir))
    run(("openssl pkcs8 -topk8 -in %s -outform DER -passout pass:secret -out %s/server.p8.der")
      :format(F"server.key", dir))
    run(("openssl pkcs12 -export -in %s -inkey %s -certfile %s -passout pass:secret -out %s/server.p12")
      :format(F"server.pem", F"server.key", F"ca.pem", dir))
  end)

  teardown(function() os.execute("rm -rf " .. dir) end)

  it("tls.load_certificates: PEM text, a PEM file, DER bytes, a DER file", function()
    local chain = assert(tls.load_certificates(F"server-chain.pem"))
    assert.equal(2, #chain)
    assert.equal("CN=localhost,O=lunatls tests", chain[1]:subject())
    assert.equal("CN=lunatls test CA,O=lunatls tests", chain[2]:subject())
    assert.equal(chain[1], tls.load_certificates(pair.read_fixture("server.pem"))[1])
    assert.equal(chain[1], tls.load_certificates(read(dir .. "/server.der"))[1])
    assert.equal(chain[1], tls.load_certificates(dir .. "/server.der")[1])
    assert.same({ nil, "load_certificates: /nonexistent: No such file or directory", "config" },
      { tls.load_certificates("/nonexistent") })
    local ok, message = tls.load_certificates(pair.read_fixture("server.pem") .. "-----BEGIN CERTIFICATE-----\n!!\n")
    assert.is_nil(ok)
    assert.matches("^load_certificates: PEM text: entry 2: ", message)
    pair.assert_bad_argument(function() tls.load_certificates(42) end, 1, "load_certificates",
      "string expected, got number")
    pair.assert_bad_argument(function() tls.load_certificates("a\0b") end, 1, "load_certificates",
      "contains a NUL byte")
  end)

  it("DER certificate, key and CA in a context", function()
    local sctx = assert(tls.new_context { mode = "server", certificate = read(dir .. "/server.der"),
                                          key = read(dir .. "/server.key.der") })
    local cctx = assert(tls.new_context { mode = "client", ca = read(dir .. "/ca.der") })
    pair.new { server_ctx = sctx, client_ctx = cctx }:connect()
    assert.is_truthy(tls.new_context { mode = "server", certificate = dir .. "/server.der",
                                       key = dir .. "/server.key.der" })
  end)

  it("an encrypted PKCS#8 DER key with its password", function()
    assert.is_truthy(tls.new_context { mode = "server", certificate = F"server.pem",
                                       key = read(dir .. "/server.p8.der"), password = "secret" })
    local ok, _, code = tls.new_context { mode = "server", certificate = F"server.pem",
                                          key = read(dir .. "/server.p8.der"), password = "wrong" }
    assert.is_nil(ok)
    assert.equal("config", code)
  end)

  it("pkcs12: certificate, key and chain from one bundle, a path or its bytes", function()
    for _, source in ipairs { dir .. "/server.p12", read(dir .. "/server.p12") } do
      local sctx = assert(tls.new_context { mode = "server", pkcs12 = source, password = "secret" })
      local p = pair.new { server_ctx = sctx }:connect()
      assert.equal(2, #p.client.conn:peer_chain()) -- the chain came along
    end
    local ok, message, code = tls.new_context { mode = "server", pkcs12 = dir .. "/server.p12", password = "nope" }
    assert.is_nil(ok)
    assert.equal("config", code)
    assert.matches("^pkcs12: ", message)
    pair.assert_bad_argument(function()
      tls.new_context { mode = "server", pkcs12 = dir .. "/server.p12", password = "secret", key = F"server.key" }
    end, 1, "new_context", "option 'pkcs12' replaces 'certificate' and 'key': give one or the other")
  end)

  it("typed subject alternative names, the public key, the signature algorithm", function()
    local cert = tls.load_certificates(F"server.pem")[1]
    assert.same({ { type = "dns", value = "localhost" }, { type = "ip", value = "127.0.0.1" },
                  { type = "ip", value = "::1" } }, cert:subject_alt_names(true))
    assert.same({ "localhost", "127.0.0.1", "::1" }, cert:subject_alt_names())
    assert.same({ "ec", 256 }, { cert:public_key() })
    assert.equal("ecdsa-with-SHA256", cert:signature_algorithm())
  end)
end)

describe("revocation", function()
  local function read(name) return pair.read_fixture(name) end

  describe("crl", function()
    it("a revoked certificate fails with 'verify', saying it is revoked", function()
      local cctx = pair.client_context { check_hostname = false, crl = F"crl.pem" }
      local p = pair.new { client_ctx = cctx, server_ctx = wronghost() }
      local result = p:handshake()
      assert.equal("verify", result.client.code)
      assert.equal("do_handshake: certificate verify failed: certificate revoked", result.client.message)
    end)

    it("a good certificate passes; the CRL as text, DER, or in a list", function()
      local der = io.popen("openssl crl -in " .. F"crl.pem" .. " -outform DER"):read("a")
      for _, crl in ipairs { F"crl.pem", read("crl.pem"), der, { read("crl.pem") } } do
        local p = pair.new { client_ctx = pair.client_context { crl = crl } }
        assert.equal("done", p:handshake().client.status)
      end
    end)

    it("crl_check without a CRL for the issuer fails: 'unable to get certificate CRL'", function()
      local p = pair.new { client_ctx = pair.client_context { verify_flags = { "crl_check" } } }
      local result = p:handshake()
      assert.equal("verify", result.client.code)
      assert.matches("unable to get certificate CRL", result.client.message)
    end)

    it("a server checks client certificates against its CRL too", function()
      local sctx = pair.server_context { verify = "require", cafile = F"ca.pem", crl = F"crl.pem" }
      local p = pair.new { server_ctx = sctx,
        client_ctx = pair.client_context { certificate = F"client.pem", key = F"client.key" } }
      assert.equal("done", p:handshake().server.status)
    end)

    it("a damaged or empty CRL source is a config error", function()
      local ok, message, code = tls.new_context { mode = "client", crl = "-----BEGIN X509 CRL-----\n!!\n" }
      assert.is_nil(ok)
      assert.equal("config", code)
      assert.matches("^crl: PEM text: entry 1: ", message)
      ok, message = tls.new_context { mode = "client", crl = F"ca.pem" }
      assert.is_nil(ok)
      assert.equal("crl: spec/fixtures/ca.pem: no CRL found", message)
    end)
  end)

  describe("OCSP stapling", function()
    local function stapled(staple, ocsp, server_opts)
      local o = { ocsp_staple = staple }
      for k, v in pairs(server_opts or {}) do o[k] = v end
      local p = pair.new { server_ctx = pair.server_context(o),
                           client_ctx = pair.client_context { ocsp = ocsp or "request", check_hostname = false } }
      return p, p:handshake()
    end

    it("good, revoked, unknown, forged (invalid), none", function()
      local cases = {
        { read("ocsp-good.der"), "good" }, { read("ocsp-revoked.der"), "invalid" },
        { read("ocsp-unknown.der"), "invalid" }, { read("ocsp-forged.der"), "invalid" }, { nil, "none" },
      }
      for _, case in ipairs(cases) do
        local p, result = stapled(case[1])
        assert.equal("done", result.client.status)
        assert.equal(case[2], (p.client.conn:ocsp_status()))
      end
    end)

    it("revoked: the response about the server's own certificate says so", function()
      local p = pair.new { server_ctx = wronghost { ocsp_staple = read("ocsp-revoked.der") },
                           client_ctx = pair.client_context { ocsp = "request", check_hostname = false } }
      assert.equal("done", p:handshake().client.status)
      assert.same({ "revoked", "the certificate is revoked" }, { p.client.conn:ocsp_status() })
    end)

    it("require: anything but good fails the handshake with 'verify'", function()
      local _, result = stapled(read("ocsp-good.der"), "require")
      assert.equal("done", result.client.status)
      _, result = stapled(nil, "require")
      assert.same({ "verify", "do_handshake: OCSP: the server stapled no OCSP response" },
        { result.client.code, result.client.message })
      local p = pair.new { server_ctx = wronghost { ocsp_staple = read("ocsp-revoked.der") },
                           client_ctx = pair.client_context { ocsp = "require", check_hostname = false } }
      result = p:handshake()
      assert.same({ "verify", "do_handshake: OCSP: the certificate is revoked" },
        { result.client.code, result.client.message })
    end)

    it("a function gives the staple per handshake (nil: none)", function()
      local calls = 0
      local p = stapled(function() calls = calls + 1; return read("ocsp-good.der") end)
      assert.equal("good", (p.client.conn:ocsp_status()))
      assert.equal(1, calls)
      local q = stapled(function() return nil end)
      assert.equal("none", (q.client.conn:ocsp_status()))
    end)

    it("a client that does not ask gets nothing, and ocsp_status says none", function()
      local p = pair.new { server_ctx = pair.server_context { ocsp_staple = read("ocsp-good.der") } }:connect()
      assert.same({ "none", "no OCSP response was checked" }, { p.client.conn:ocsp_status() })
    end)

    it("options are checked", function()
      pair.assert_bad_argument(function() tls.new_context { mode = "client", ocsp = "maybe" } end, 1,
        "new_context", "option 'ocsp': invalid value 'maybe' (expected 'request' or 'require')")
      pair.assert_bad_argument(function() tls.new_context { mode = "server", ocsp = "request" } end, 1,
        "new_context", "option 'ocsp' is for clients (servers: ocsp_staple)")
      pair.assert_bad_argument(function() tls.new_context { mode = "client", ocsp_staple = "x" } end, 1,
        "new_context", "option 'ocsp_staple' is for servers")
    end)

    it("our client against openssl s_server -status_file", function()
      local port = process.free_port()
      local server = process.spawn(("timeout 30 openssl s_server -accept 127.0.0.1:%d -naccept 1 -cert %s -key %s "
        .. "-status_file %s -www"):format(port, F"server.pem", F"server.key", F"ocsp-good.der"))
      finally(function() server:kill() end)
      assert(process.wait_port(port, 10), server:output())
      local conn = pair.client_context { ocsp = "require" }:new_conn { server_name = "localhost" }
      local l = link.new(conn, assert(link.connect(port)))
      finally(function() l:close() end)
      assert.equal("done", l:handshake())
      assert.same({ "good", "the certificate is good" }, { conn:ocsp_status() })
    end)

    it("our server's staple, read by openssl s_client -status", function()
      local listener, port = link.listen()
      local client = process.spawn(("timeout 30 stdbuf -oL openssl s_client -connect 127.0.0.1:%d -status -CAfile %s")
        :format(port, F"ca.pem"), { stdin = "" })
      finally(function() client:kill(); listener:close() end)
      local sock = assert(link.accept(listener, 10))
      local conn = pair.server_context { ocsp_staple = read("ocsp-good.der") }:new_conn()
      local l = link.new(conn, sock)
      finally(function() l:close() end)
      assert.equal("done", l:handshake())
      assert.is_true(client:wait_output("Cert Status: good"), client:output())
    end)
  end)
end)
