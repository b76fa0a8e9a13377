-- Asynchronous certificate selection (core): a server context made with
-- client_hello = true pauses each handshake once the ClientHello is read
-- (do_handshake() says "want_certificate"); conn:client_hello() describes
-- it, conn:set_context(ctx | false) chooses, and the handshake goes on.
-- In-process peers, and openssl s_client on 127.0.0.1.

local tls = require "lunatls"
local pair = require "helpers.pair"
local link = require "helpers.link"
local process = require "helpers.process"

local F = pair.fixture

local function pausing(opts)
  local o = { mode = "server", client_hello = true }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(tls.new_context(o))
end

local sni_client = pair.sni_client_context

local function wronghost(opts) return pair.server_context_with("wronghost", opts) end

--- A pair whose server pauses: returns the pair once the server said
-- "want_certificate".
local function paused(server_ctx, client_ctx, name)
  local p = pair.new { server_ctx = server_ctx or pausing(), client_ctx = client_ctx or sni_client(),
                       client = { server_name = name or "b.test" } }
  assert.equal("want_read", p.client.conn:do_handshake())
  p:pump()
  assert.equal("want_certificate", p.server.conn:do_handshake())
  return p
end

describe("client_hello = true", function()
  it("pauses once the ClientHello is read, before the server sends anything", function()
    local p = paused()
    assert.same({ nil, "want_read" }, { p.server.net:read() })
  end)

  it("describes the ClientHello", function()
    local p = paused(nil, sni_client { alpn = { "h2", "http/1.1" }, groups = "X25519:P-256" })
    local hello = p.server.conn:client_hello()
    assert.equal("b.test", hello.server_name)
    assert.same({ "h2", "http/1.1" }, hello.alpn)
    assert.same({ "TLSv1.3", "TLSv1.2" }, hello.versions)
    assert.same({ "x25519", "secp256r1" }, hello.groups)
    assert.equal("TLS_AES_256_GCM_SHA384", hello.ciphers[1])
    assert.is_truthy(hello.signature_algorithms[1]:match("^ecdsa_secp256r1_sha256$"))
    assert.equal("b.test", p.server.conn:server_name())
  end)

  it("gives no server_name and the legacy version for a TLS 1.2 client without SNI", function()
    local p = pair.new { server_ctx = pausing(), client_ctx = sni_client { max_version = "tls1.2", verify = "none" },
                         client = {} }
    p.client.conn:do_handshake()
    p:pump()
    assert.equal("want_certificate", p.server.conn:do_handshake())
    local hello = p.server.conn:client_hello()
    assert.is_nil(hello.server_name)
    assert.equal("TLSv1.2", hello.versions[#hello.versions])
  end)

  it("set_context adopts the whole chosen context: certificate, ALPN", function()
    local p = paused(nil, sni_client { alpn = { "h2", "b-proto" } })
    p.server.conn:set_context(wronghost { alpn = { "b-proto" } })
    p:connect()
    assert.equal("CN=wrong.example,O=lunatls tests", p.client.conn:peer_certificate():subject())
    assert.equal("b-proto", p.client.conn:alpn_selected())
  end)

  it("set_context adopts the chosen context's verify policy", function()
    local p = paused()
    p.server.conn:set_context(pair.server_context { verify = "require", cafile = F"ca.pem" })
    local result = p:handshake()
    assert.equal("verify", result.server.code)
  end)

  it("without set_context the handshake goes on with the original context", function()
    local p = paused(pausing { certificate = F"server.pem", key = F"server.key" })
    p:connect()
    assert.equal("CN=localhost,O=lunatls tests", p.client.conn:peer_certificate():subject())
  end)

  it("set_context(false) refuses the client with unrecognized_name", function()
    local p = paused()
    p.server.conn:set_context(false)
    local result = p:handshake()
    assert.equal("protocol", result.server.code)
    assert.equal("protocol", result.client.code)
    assert.matches("unrecognized name", result.client.message)
  end)

  it("a read after set_context goes on with the handshake, as do_handshake would", function()
    local p = paused()
    p.server.conn:set_context(wronghost())
    assert.same({ nil, "want_read" }, { p.server.conn:read() })
    p:connect()
    assert.equal("hi", p:send(p.client, "hi"))
  end)

  it("a read before the handshake pauses too", function()
    local p = pair.new { server_ctx = pausing(), client_ctx = sni_client(), client = { server_name = "b.test" } }
    p.client.conn:do_handshake()
    p:pump()
    assert.same({ nil, "want_certificate" }, { p.server.conn:read() })
  end)

  it("pauses once, also when a HelloRetryRequest brings a second ClientHello", function()
    local p = paused(nil, sni_client { groups = "X25519:P-256" })
    p.server.conn:set_context(wronghost { groups = "P-256" })
    local result = p:handshake()
    assert.equal("done", result.server.status, result.server.message)
    assert.is_false(table.concat(result.server.statuses, " "):find("want_certificate") ~= nil)
  end)

  it("binds sessions to the chosen context", function()
    local sctx, back, cctx = pausing(), wronghost(), sni_client()
    local function connect(session, choice)
      local p = pair.new { server_ctx = sctx, client_ctx = cctx, client = { server_name = "b.test", session = session } }
      p.client.conn:do_handshake()
      p:pump()
      assert.equal("want_certificate", p.server.conn:do_handshake())
      p.server.conn:set_context(choice)
      p:connect()
      assert(p:send(p.server, "x") == "x")
      p.client.conn:read()
      return p
    end
    local first = connect(nil, back)
    local session = first.client.conn:session()
    assert.is_true(connect(session, back).server.conn:session_reused())
    assert.is_false(connect(session, wronghost()).server.conn:session_reused())
  end)

  it("set_context is a mistake outside a pause, and takes only server contexts", function()
    local p = pair.new()
    local err = pair.error_of(function() p.server.conn:set_context(pair.server_context()) end)
    assert.matches("set_context: the handshake is not waiting for a certificate", err)
    local q = paused()
    pair.assert_bad_argument(function() q.server.conn:set_context(pair.client_context()) end, 1,
      "set_context", "a server context expected")
    pair.assert_bad_argument(function() q.server.conn:set_context("x") end, 1, "set_context",
      "lunatls.Context expected, got string")
  end)

  it("is for servers, and excludes the servername callback", function()
    pair.assert_bad_argument(function() tls.new_context { mode = "client", client_hello = true } end, 1,
      "new_context", "option 'client_hello' is for servers")
    pair.assert_bad_argument(function()
      tls.new_context { mode = "server", client_hello = true, servername = function() end }
    end, 1, "new_context", "options 'servername' and 'client_hello' exclude each other "
      .. "(choose the context during the pause: conn:set_context)")
  end)

  it("client_hello() is nil before the pause and on contexts that do not pause", function()
    local p = pair.new()
    assert.is_nil(p.server.conn:client_hello())
    p:connect()
    assert.is_nil(p.server.conn:client_hello())
  end)
end)

describe("client_hello = true against openssl s_client", function()
  it("pauses, lets the application choose by SNI, and s_client sees the chosen certificate", function()
    local listener, port = link.listen()
    local client = process.spawn(("timeout 30 stdbuf -oL openssl s_client -connect 127.0.0.1:%d "
      .. "-servername b.test -alpn b-proto -CAfile %s"):format(port, F"ca.pem"), { stdin = "" })
    finally(function()
      client:kill()
      listener:close()
    end)
    local sock = assert(link.accept(listener, 10), "s_client did not connect: " .. client:output())
    local conn = pausing():new_conn()
    local l = link.new(conn, sock)
    finally(function() l:close() end)
    assert.equal("want_certificate", l:handshake())
    assert.equal("b.test", conn:client_hello().server_name)
    assert.same({ "b-proto" }, conn:client_hello().alpn)
    conn:set_context(wronghost { alpn = { "b-proto" } })
    assert.equal("done", l:handshake())
    assert.equal("b-proto", conn:alpn_selected())
    assert.is_true(client:wait_output("wrong.example"))
  end)
end)
