-- Argument checking, closed objects, <close>, and lifetimes: programming
-- errors raise with a message that names the culprit; nothing crashes.

local tls = require "lunatls"
local pair = require "helpers.pair"

local bad_argument = pair.assert_bad_argument

local CONN_METHODS = {
  "do_handshake", "read", "read_into", "write", "shutdown", "set_connect_state", "set_accept_state",
  "key_update", "version", "cipher", "alpn_selected", "server_name", "peer_certificate",
  "peer_chain", "verify_result", "session", "session_reused", "export_keying_material",
  "pending", "bio",
}

--- A function that calls `method` as a field of its first argument, so that
-- Lua's error names the method ("bad argument #1 to 'read'"): calling it
-- through a variable would name the variable instead.
local function caller(method)
  return assert(load(("local object, self, a, b = ...; object.%s(self, a, b)"):format(method)))
end

local function new_client()
  return pair.client_context():new_conn { server_name = "localhost" }
end

describe("arguments", function()
  describe("a Conn method called on something else", function()
    local conn = new_client()
    local ctx = pair.client_context()
    local bio = tls.new_bio_pair()
    -- the wrong self, and how the error names its type
    local wrong = { { 42, "number" }, { "conn", "string" }, { ctx, "lunatls.Context" },
                    { bio, "lunatls.BIO" }, { {}, "table" } }
    for _, method in ipairs(CONN_METHODS) do
      it(("raises for %s"):format(method), function()
        local call = caller(method)
        for _, case in ipairs(wrong) do
          bad_argument(function() call(conn, case[1], "x", 1) end, 1, method,
            "lunatls.Conn expected, got " .. case[2])
        end
        bad_argument(function() call(conn, nil) end, 1, method, "lunatls.Conn expected, got nil")
      end)
    end

    it("raises for close, even on an open connection's neighbour types", function()
      bad_argument(function() conn.close(ctx) end, 1, "close", "lunatls.Conn expected, got lunatls.Context")
      bad_argument(function() conn.close(nil) end, 1, "close", "lunatls.Conn expected, got nil")
    end)
  end)

  describe("Conn method arguments", function()
    it("read(max) needs a positive integer", function()
      local conn = new_client()
      bad_argument(function() conn:read("lots") end, 1, "read", "number expected, got string")
      bad_argument(function() conn:read(0) end, 1, "read", "max must be positive")
      bad_argument(function() conn:read(-5) end, 1, "read", "max must be positive")
      bad_argument(function() conn:read(1.5) end, 1, "read", "number has no integer representation")
    end)

    it("write(data) needs a string or a Buffer", function()
      local conn = new_client()
      bad_argument(function() conn:write() end, 1, "write", "string or lunatls.Buffer expected, got no value")
      bad_argument(function() conn:write({}) end, 1, "write", "string or lunatls.Buffer expected, got table")
      bad_argument(function() conn:write(false) end, 1, "write", "string or lunatls.Buffer expected, got boolean")
      bad_argument(function() conn:write(tls.new_bio_pair()) end, 1, "write",
        "string or lunatls.Buffer expected, got lunatls.BIO")
    end)

    it("read_into(buffer[, max]) needs a Buffer and a positive max", function()
      local conn = new_client()
      local buffer = tls.new_buffer(10)
      bad_argument(function() conn:read_into() end, 1, "read_into", "lunatls.Buffer expected, got no value")
      bad_argument(function() conn:read_into("x") end, 1, "read_into", "lunatls.Buffer expected, got string")
      bad_argument(function() conn:read_into(buffer, 0) end, 2, "read_into", "max must be positive")
      bad_argument(function() conn:read_into(buffer, "lots") end, 2, "read_into", "number expected, got string")
    end)

    it("export_keying_material checks label, length and context", function()
      local conn = new_client()
      bad_argument(function() conn:export_keying_material(nil, 32) end, 1, "export_keying_material",
        "string expected, got nil")
      bad_argument(function() conn:export_keying_material("EXPERIMENTAL-x") end, 2, "export_keying_material",
        "number expected, got no value")
      bad_argument(function() conn:export_keying_material("EXPERIMENTAL-x", 0) end, 2,
        "export_keying_material", "length must be between 1 and 16384")
      bad_argument(function() conn:export_keying_material("EXPERIMENTAL-x", 16385) end, 2,
        "export_keying_material", "length must be between 1 and 16384")
      bad_argument(function() conn:export_keying_material("EXPERIMENTAL-x", 32, {}) end, 3,
        "export_keying_material", "string expected, got table")
    end)
  end)

  describe("new_conn", function()
    local ctx = pair.client_context()
    local cases = {
      { { server_name = 1 }, "option 'server_name': string expected, got number" },
      { { server_name = "a", bio = "x" }, "option 'bio': lunatls.BIO expected, got string" },
      { { server_name = "a", bio = ctx }, "option 'bio': lunatls.BIO expected, got lunatls.Context" },
      { { server_name = "a", fd = "x" }, "option 'fd': integer or object with getfd() expected" },
      { { server_name = "a", fd = -1 }, "option 'fd': not a valid socket" },
      { { server_name = "a", session = "x" }, "option 'session': lunatls.Session expected, got string" },
      { { server_name = "a", session = ctx }, "option 'session': lunatls.Session expected, got lunatls.Context" },
      { { server_name = "a", alpn = "h2" }, "option 'alpn': list of strings expected, got string" },
      { { server_name = "a", alpn = { "" } }, "option 'alpn': protocol names are strings of 1 to 255 bytes" },
      { { server_name = "a", buffer_size = 0 }, "option 'buffer_size' must be between 1 and 64 MiB" },
      { { server_name = "a", buffer_size = "big" }, "option 'buffer_size': integer expected, got string" },
      { { server_name = "a", bogus = true }, "unknown option 'bogus'" },
    }
    for _, case in ipairs(cases) do
      it("raises: " .. case[2], function()
        bad_argument(function() ctx:new_conn(case[1]) end, 1, "new_conn", case[2])
      end)
    end

    it("raises for a non-table, and on a non-context", function()
      bad_argument(function() ctx:new_conn("localhost") end, 1, "new_conn", "table expected, got string")
      bad_argument(function() ctx.new_conn(42) end, 1, "new_conn", "lunatls.Context expected, got number")
      bad_argument(function() ctx.mode(new_client()) end, 1, "mode", "lunatls.Context expected, got lunatls.Conn")
    end)

    it("refuses client options on a server connection", function()
      local server_ctx = pair.server_context()
      bad_argument(function() server_ctx:new_conn { server_name = "a" } end, 1, "new_conn",
        "option 'server_name' is for client connections")
      bad_argument(function() server_ctx:new_conn { alpn = { "h2" } } end, 1, "new_conn",
        "option 'alpn' is for client connections")
    end)

    it("refuses a BIO end that is closed", function()
      local a = tls.new_bio_pair()
      a:close()
      assert.has_error(function() ctx:new_conn { server_name = "a", bio = a } end,
        "attempt to use a closed lunatls.BIO")
    end)
  end)

  describe("certificate and session methods", function()
    local p = pair.new():connect()
    p.client.conn:read()
    local cert = p.client.conn:peer_certificate()
    local session = p.client.conn:session()

    it("raise on the wrong self", function()
      for _, method in ipairs { "subject", "issuer", "subject_alt_names", "not_before", "not_after",
                                "serial", "fingerprint", "pem" } do
        bad_argument(function() caller(method)(cert, session) end, 1, method,
          "lunatls.Certificate expected, got lunatls.Session")
      end
      for _, method in ipairs { "export", "is_resumable", "protocol" } do
        bad_argument(function() caller(method)(session, cert) end, 1, method,
          "lunatls.Session expected, got lunatls.Certificate")
      end
      bad_argument(function() tls.import_session({}) end, 1, "import_session", "string expected, got table")
    end)
  end)
end)

describe("closed objects", function()
  it("a closed Conn raises on every method", function()
    local conn = new_client()
    conn:close()
    for _, method in ipairs(CONN_METHODS) do
      assert.has_error(function() conn[method](conn, "x", 1) end, "attempt to use a closed lunatls.Conn")
    end
  end)

  it("close is idempotent and tostring says closed", function()
    local conn = new_client()
    assert.matches("^lunatls.Conn: 0x%x+ %(client, handshake not done%)$", tostring(conn))
    conn:close()
    conn:close()
    assert.equal("lunatls.Conn (closed)", tostring(conn))
  end)

  it("close after a finished handshake does no I/O", function()
    local p = pair.new():connect()
    local before = p.client.net:pending()
    p.client.conn:close()
    assert.equal(before, p.client.net:pending()) -- no close_notify was written
  end)

  it("local c <close> closes at the end of the scope", function()
    local seen
    do
      local conn <close> = new_client()
      seen = conn
      assert.equal("want_read", conn:do_handshake())
    end
    assert.equal("lunatls.Conn (closed)", tostring(seen))
    assert.has_error(function() seen:read() end, "attempt to use a closed lunatls.Conn")
  end)

  it("<close> closes when the scope is left by an error too", function()
    local seen
    local ok = pcall(function()
      local conn <close> = new_client()
      seen = conn
      error("leaving")
    end)
    assert.is_false(ok)
    assert.equal("lunatls.Conn (closed)", tostring(seen))
  end)

  it("a callback cannot call back into its own connection", function()
    local conn
    local ctx = pair.client_context { keylog = function() conn:read() end }
    local p = pair.new { client_ctx = ctx }
    conn = p.client.conn
    assert.has_error(function() p:handshake() end,
      "lunatls.Conn is busy: called from one of its own callbacks")
  end)
end)

describe("lifetimes", function()
  it("a connection outlives its context (and the context's callbacks)", function()
    local lines = 0
    local function make()
      local client_ctx = pair.client_context { keylog = function() lines = lines + 1 end }
      local server_ctx = pair.server_context()
      return pair.new { client_ctx = client_ctx, server_ctx = server_ctx }
    end
    local p = make()
    collectgarbage()
    collectgarbage()
    p:connect()
    assert.equal(5, lines)
    assert.equal("still here", p:send(p.client, "still here"))
  end)

  it("a connection outlives the Lua object of the BIO end it was given", function()
    local inner, outer = tls.new_bio_pair()
    local conn = pair.client_context():new_conn { server_name = "localhost", bio = inner }
    inner = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.equal("want_read", conn:do_handshake())
    assert.is_true(outer:pending() > 0)
  end)

  it("the servername callback's chosen context outlives every other reference", function()
    local server_ctx
    do
      local chosen = pair.server_context()
      server_ctx = pair.server_context {
        certificate = pair.fixture("wronghost.pem"), key = pair.fixture("wronghost.key"),
        servername = function() local c = chosen; chosen = nil; return c end,
      }
    end
    local p = pair.new { server_ctx = server_ctx }
    local result = p:handshake()
    collectgarbage()
    collectgarbage()
    assert.equal("done", result.client.status)
    assert.equal("after gc", p:send(p.server, "after gc"))
  end)

  it("callbacks run on whichever coroutine calls the connection", function()
    local lines = 0
    local ctx = pair.client_context { keylog = function() lines = lines + 1 end }
    local p = pair.new { client_ctx = ctx }
    local client_status, server_status
    for _ = 1, 10 do
      -- each step in a fresh coroutine, dropped and collected afterwards
      client_status = coroutine.wrap(function() return p.client.conn:do_handshake() end)()
      p:pump()
      server_status = p.server.conn:do_handshake()
      p:pump()
      collectgarbage()
      if client_status == "done" and server_status == "done" then break end
    end
    assert.equal("done", client_status)
    assert.equal(5, lines)
  end)

  it("a callback that yields raises a clean error, and the connection can still be used", function()
    local ctx = pair.client_context { keylog = function() coroutine.yield("inside") end }
    local p = pair.new { client_ctx = ctx }
    p.client.conn:do_handshake()
    p:pump()
    p.server.conn:do_handshake()
    p:pump()
    local co = coroutine.create(function() return p.client.conn:do_handshake() end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.equal("attempt to yield across a C-call boundary", err)
    -- not left busy: the handshake goes on (the secrets were logged, or lost, in that call)
    assert.equal("done", p.client.conn:do_handshake())
    p:pump()
    assert.equal("done", p.server.conn:do_handshake())
    assert.equal("still fine", p:send(p.client, "still fine"))
  end)

  it("many connections collected without close do not crash", function()
    local ctx = pair.client_context()
    for _ = 1, 200 do
      local conn = ctx:new_conn { server_name = "localhost" }
      conn:do_handshake()
    end
    collectgarbage()
    collectgarbage()
    local p = pair.new():connect()
    assert.equal("TLSv1.3", p.client.conn:version())
  end)
end)
