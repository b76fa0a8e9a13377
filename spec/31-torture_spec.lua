-- API torture: every entry of the public API (listed below and checked
-- against the module table and each class's methods, so a new function
-- cannot be forgotten) called with every wrong type, with nil, on closed
-- objects; calls in every illegal order; coroutines abandoned mid-handshake
-- and collected; finalizers that close objects while they are being used.
-- Nothing may crash; a C-core entry either raises one of the documented
-- programming errors or returns a documented result.

local tls = require "lunatls"
local pair = require "helpers.pair"
local memory = require "lunatls.transport.memory"

package.path = "./fuzz/?.lua;" .. package.path
local check = require "check"

-- ---- the public API ---------------------------------------------------------

local API = {
  module = { "new_context", "new_bio_pair", "import_session", "wrap", "connect", "accept",
             "_VERSION", "OPENSSL_VERSION", "load_certificates", "release_memory", "new_buffer",
             "new_poller" },
  ["lunatls.Context"] = { "new_conn", "mode" },
  ["lunatls.Conn"] = { "do_handshake", "read", "read_into", "write", "shutdown", "close", "set_connect_state",
                       "set_accept_state", "key_update", "version", "cipher", "alpn_selected",
                       "server_name", "peer_certificate", "peer_chain", "verify_result", "session",
                       "session_reused", "export_keying_material", "pending", "has_pending", "bio",
                      "client_hello", "set_context", "channel_binding", "group",
                      "verify_client_post_handshake", "ocsp_status" },
  ["lunatls.BIO"] = { "write", "read", "pending", "write_guarantee", "read_request", "shutdown_write",
                      "close", "move_to", "send_to", "receive_from" },
  ["lunatls.Buffer"] = { "tostring", "len", "capacity", "clear" },
  ["lunatls.Poller"] = { "set", "wait", "close" },
  ["lunatls.Certificate"] = { "subject", "issuer", "subject_alt_names", "not_before", "not_after",
                              "serial", "fingerprint", "pem", "public_key", "signature_algorithm" },
  ["lunatls.Session"] = { "export", "is_resumable", "protocol" },
  ["lunatls.Stream"] = { "handshake", "send", "receive", "receive_some", "shutdown", "close", "abort",
                         "settimeout", "setdeadline", "dirty", "getfd", "failure", "version", "cipher",
                         "alpn_selected", "server_name", "peer_certificate", "peer_chain",
                         "verify_result", "session", "session_reused", "export_keying_material",
                         "key_update", "pending" },
}

-- The Lua layer (module functions wrap/connect/accept, Stream methods) is
-- held to "raises or returns nil, message, code, never crashes"; the C core
-- to the exact documented errors below.
local LUA_LAYER = { wrap = true, connect = true, accept = true, ["lunatls.Stream"] = true }

-- What a C-core entry may raise: programming errors only (style.md), or an
-- error our own hostile values raise from inside a metamethod or callback.
local RAISED = {
  "^bad argument #%d+ to '[%w_.?]+'",
  "^[^:]*:?%d*:? ?attempt to use a closed lunatls%.%a+$", -- with the caller's position
  "lunatls%.Conn is busy",
  "^set_context: the handshake is not waiting for a certificate",
  "calling '[%w_]+' on bad self",
  "hostile value",
}

local function documented_raise(err)
  if type(err) ~= "string" then return false end
  for _, pattern in ipairs(RAISED) do
    if err:find(pattern) then return true end
  end
  return false
end

local function sorted_keys(t, skip_meta)
  local keys = {}
  for k in pairs(t) do
    if not (skip_meta and tostring(k):sub(1, 2) == "__") then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

local function sorted(list)
  local copy = { table.unpack(list) }
  table.sort(copy)
  return copy
end

-- ---- objects to call things on, open and closed ---------------------------

local function connected()
  local p = pair.new():connect()
  p.client.conn:read() -- TLS 1.3: the tickets, so that a session exists
  return p
end

--- One of every object, open; fresh each time.
local function objects()
  local p = connected()
  local a, b = tls.new_bio_pair()
  -- a timeout: a torture call that waits returns instead of hanging
  local stream = tls.wrap((memory.pipe()), pair.client_context(), { server_name = "localhost", timeout = 0.05 })
  return {
    ["lunatls.Context"] = pair.client_context(),
    ["lunatls.Conn"] = p.client.conn,
    ["lunatls.BIO"] = a,
    ["lunatls.Certificate"] = assert(p.client.conn:peer_certificate()),
    ["lunatls.Session"] = assert(p.client.conn:session()),
    ["lunatls.Stream"] = stream,
    ["lunatls.Buffer"] = tls.new_buffer(64),
    ["lunatls.Poller"] = assert(tls.new_poller()),
    keep = { p, b },
  }
end

--- Values of every type, and objects of the wrong class, open and closed.
local function hostile_values()
  local o = objects()
  local closed_conn = pair.client_context():new_conn { server_name = "localhost" }
  closed_conn:close()
  local closed_bio = tls.new_bio_pair()
  closed_bio:close()
  local raising = setmetatable({}, {
    __index = function() error("hostile value: __index") end,
    __len = function() error("hostile value: __len") end,
    __tostring = function() error("hostile value: __tostring") end,
  })
  return {
    { "nil", nil }, { "true", true }, { "false", false }, { "0", 0 }, { "-1", -1 },
    { "maxinteger", math.maxinteger }, { "mininteger", math.mininteger }, { "huge", math.huge },
    { "nan", 0 / 0 }, { "1.5", 1.5 }, { "empty string", "" }, { "string", "x" },
    { "string with NUL", "a\0b" }, { "70 KB string", string.rep("A", 70000) },
    { "PEM-looking string", "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n" },
    { "table", {} }, { "list", { 1, 2, 3 } }, { "list of tables", { {}, {} } },
    { "table that raises", raising }, { "function", function() return 1 end },
    { "raising function", function() error("hostile value: function") end },
    { "coroutine", coroutine.create(function() end) }, { "file", io.stdout },
    { "context", o["lunatls.Context"] }, { "conn", o["lunatls.Conn"] }, { "closed conn", closed_conn },
    { "bio", o["lunatls.BIO"] }, { "closed bio", closed_bio }, { "certificate", o["lunatls.Certificate"] },
    { "session", o["lunatls.Session"] }, { "stream", o["lunatls.Stream"] },
    { "buffer", o["lunatls.Buffer"] },
  }, o
end

--- Calls fn(...) inside a coroutine (a Lua-layer call may wait, i.e.
-- yield: it is then abandoned there); returns ok, err.
local function call(fn, ...)
  local co = coroutine.create(fn)
  local result = table.pack(coroutine.resume(co, ...))
  return result[1], result[2], result
end

--- Judges one call of a C-core entry: raised a documented error, or
-- returned. Returns a description of what is wrong, or nil.
local function judge(name, ok, err)
  if ok then return nil end
  if documented_raise(err) then return nil end
  return ("%s raised %s"):format(name, tostring(err))
end

-- ---- the tests --------------------------------------------------------------

describe("the API list", function()
  it("is exactly the module table", function()
    assert.same(sorted(API.module), sorted_keys(tls))
  end)

  it("has exactly the methods of each class", function()
    local o = objects()
    for class, methods in pairs(API) do
      if class ~= "module" then
        local object = o[class]
        local mt = debug.getmetatable(object)
        assert.equal(class, mt.__name)
        local index = mt.__index
        assert.same(sorted(methods), sorted_keys(index, true), class)
      end
    end
  end)
end)

describe("every entry called with every wrong value", function()
  -- a fresh receiver per class per call: an earlier call may have closed it
  it("module functions: each argument position, every value", function()
    local values = hostile_values()
    local listener = assert(require("socket").bind("127.0.0.1", 0))
    -- plausible arguments for the positions not being tortured
    local defaults = {
      new_context = { { mode = "client", verify = "none" } }, new_bio_pair = { 100 }, import_session = { "x" },
      load_certificates = { "x" }, release_memory = {}, new_buffer = { 64 }, new_poller = {},
      wrap = { (memory.pipe()), pair.client_context(), {} },
      connect = { "127.0.0.1", 1, pair.client_context() }, -- port 1: refused at once
      accept = { listener, pair.server_context(), { timeout = 0.01 } },
    }
    local problems = {}
    for _, name in ipairs(API.module) do
      local fn = tls[name]
      if type(fn) == "function" then
        for position = 1, 3 do
          for _, v in ipairs(values) do
            local args = { table.unpack(defaults[name]) }
            args[position] = v[2]
            -- no DNS lookups of nonsense names; accept keeps its timeout (it
            -- would wait for a client forever)
            if not (name == "connect" and position == 1 and type(v[2]) == "string")
               and not (name == "accept" and position == 3) then
              local ok, err = call(fn, table.unpack(args, 1, 3))
              local problem
              if not LUA_LAYER[name] then problem = judge(name, ok, err)
              elseif not ok and type(err) ~= "string" then problem = name .. " raised a non-string" end
              if problem then problems[#problems + 1] = ("%s #%d = %s: %s"):format(name, position, v[1], problem) end
            end
          end
        end
        local ok, err = call(fn) -- no argument at all
        if not LUA_LAYER[name] and judge(name, ok, err) then problems[#problems + 1] = name .. "(): " .. err end
      end
    end
    listener:close()
    assert.same({}, problems)
  end)

  --- Is this object closed (so a new receiver is needed)?
  local function is_closed(object)
    return tostring(object):find("(closed)", 1, true) ~= nil
  end

  for class, methods in pairs(API) do
    if class ~= "module" then
      it(class .. " methods: every value as self and as each argument", function()
        local values = hostile_values()
        local problems = {}
        local o = objects()
        local index = debug.getmetatable(o[class]).__index
        for _, method in ipairs(methods) do
          local fn = index[method]
          for _, v in ipairs(values) do
            -- v as self: the C core names what it expected (an object of
            -- the right class is no wrong value: open it works, closed it
            -- raises, both tested elsewhere)
            local ok, err = call(fn, v[2], 1, 2)
            local mt = debug.getmetatable(v[2])
            local same_class = type(mt) == "table" and mt.__name == class
            if not LUA_LAYER[class] and not same_class then
              if ok then
                problems[#problems + 1] = ("%s.%s(%s) did not raise"):format(class, method, v[1])
              elseif not tostring(err):find("^bad argument #1 to '[%w_?]+' %(" .. class:gsub("%.", "%%.")
                                             .. " expected, got ") then
                problems[#problems + 1] = ("%s.%s(%s) raised %s"):format(class, method, v[1], tostring(err))
              end
            end
            -- v as each argument of an open receiver
            for position = 1, 3 do
              local args = { "EXPORTER-x", 16, "ctx" }
              args[position] = v[2]
              if is_closed(o[class]) or (class == "lunatls.Stream" and o[class].dead) then o = objects() end
              ok, err = call(fn, o[class], table.unpack(args, 1, 3))
              if not LUA_LAYER[class] then
                local problem = judge(class .. "." .. method, ok, err)
                if problem then problems[#problems + 1] = ("#%d = %s: %s"):format(position + 1, v[1], problem) end
              elseif not ok and type(err) ~= "string" then
                problems[#problems + 1] = ("%s.%s raised a non-string"):format(class, method)
              end
            end
          end
        end
        assert.same({}, problems)
      end)
    end
  end

  it("new_context: every option set to every wrong value", function()
    local values = hostile_values()
    local keys = { "mode", "certificate", "key", "password", "ca", "cafile", "capath", "verify",
                   "verify_depth", "verify_flags", "check_hostname", "min_version", "max_version",
                   "ciphers", "ciphersuites", "groups", "alpn", "servername", "session_cache", "tickets",
                   "keylog", "client_hello", "security_level", "sigalgs", "client_ca", "ticket_keys",
                   "session_cache_size", "post_handshake_auth", "pkcs12", "crl", "ocsp", "ocsp_staple",
                   "unknown_option" }
    local problems = {}
    for _, mode in ipairs { "client", "server" } do
      for _, key in ipairs(keys) do
        for _, v in ipairs(values) do
          -- a certificate and key only where the option needs them
          -- (and a cafile: without a CA a client loads the whole system store)
          local opts = { mode = mode, cafile = pair.fixture("ca.pem") }
          if key == "key" or key == "password" then
            opts.certificate = pair.fixture("server.pem")
            opts.key = pair.fixture(key == "password" and "server-encrypted.key" or "server.key")
          end
          opts[key] = v[2]
          local ok, ctx, message, code = pcall(tls.new_context, opts)
          if ok and ctx == nil and (code ~= "config" or type(message) ~= "string") then
            problems[#problems + 1] = ("%s = %s: returned %s, %s"):format(key, v[1], tostring(message), tostring(code))
          elseif not ok and not documented_raise(ctx) then
            problems[#problems + 1] = ("%s = %s: raised %s"):format(key, v[1], tostring(ctx))
          end
        end
      end
    end
    assert.same({}, problems)
  end)

  it("new_conn: every option set to every wrong value", function()
    local values = hostile_values()
    local problems = {}
    for _, ctx in ipairs { pair.client_context(), pair.server_context() } do
      for _, key in ipairs { "server_name", "bio", "session", "alpn", "buffer_size", "unknown_option" } do
        for _, v in ipairs(values) do
          local ok, conn = pcall(ctx.new_conn, ctx, { [key] = v[2], server_name = key ~= "server_name"
                                                       and ctx:mode() == "client" and "localhost" or nil })
          if not ok and not documented_raise(conn) then
            problems[#problems + 1] = ("%s = %s: raised %s"):format(key, v[1], tostring(conn))
          elseif ok then
            conn:close()
          end
        end
      end
    end
    assert.same({}, problems)
  end)
end)

describe("closed objects", function()
  it("a closed Conn or BIO raises 'attempt to use a closed ...' from every method but close", function()
    for _, class in ipairs { "lunatls.Conn", "lunatls.BIO" } do
      local o = objects()
      local object = o[class]
      object:close()
      for _, method in ipairs(API[class]) do
        local ok, err = pcall(object[method], object, "x", 1)
        if method == "close" then
          assert.is_true(ok, err) -- idempotent
        else
          assert.is_false(ok, class .. ":" .. method)
          assert.equal("attempt to use a closed " .. class, err, class .. ":" .. method)
        end
      end
      assert.equal(class .. " (closed)", tostring(object))
    end
  end)

  -- Context, Certificate and Session have no close(): only a finalizer that
  -- resurrects one after the collector ran its __gc reaches them closed.
  for _, class in ipairs { "lunatls.Context", "lunatls.Certificate", "lunatls.Session", "lunatls.Conn" } do
    it(class .. " resurrected by a finalizer after its __gc: every method raises, tostring works", function()
      local resurrected
      do
        -- made first, so finalized last: after the object's own __gc
        local keeper = setmetatable({}, { __gc = function(self) resurrected = self.object end })
        keeper.object = objects()[class]
        keeper = nil -- luacheck: ignore
      end
      collectgarbage()
      collectgarbage()
      assert.is_truthy(resurrected)
      for _, method in ipairs(API[class]) do
        local ok, err = pcall(resurrected[method], resurrected, "x", 1)
        if method ~= "close" then
          assert.is_false(ok, method)
          assert.equal("attempt to use a closed " .. class, err)
        end
      end
      assert.is_string(tostring(resurrected)) -- never a crash
      resurrected = nil
      collectgarbage()
    end)
  end
end)

describe("illegal orders", function()
  it("read and write before the handshake start it: nil, 'want_read'", function()
    for _, ctx in ipairs { pair.client_context(), pair.server_context() } do
      local conn = ctx:new_conn { server_name = ctx:mode() == "client" and "localhost" or nil }
      assert.same({ nil, "want_read" }, { conn:read() })
      assert.same({ nil, "want_read" }, { conn:write("early") })
    end
  end)

  it("a handshake started by read() finishes with do_handshake, and the early write is delivered", function()
    local p = pair.new()
    assert.same({ nil, "want_read" }, { p.client.conn:write("early") })
    p:pump()
    assert.equal("done", p:handshake().server.status)
    assert.equal(5, p.client.conn:write("early")) -- retried with the same bytes
    p:pump()
    assert.equal("early", p.server.conn:read())
  end)

  it("shutdown during the handshake is refused, and the handshake still completes", function()
    local p = pair.new()
    assert.equal("want_read", p.client.conn:do_handshake())
    assert.same({ nil, "shutdown: shutdown while in init", "protocol" }, { p.client.conn:shutdown() })
    p:connect()
    assert.equal("ping", p:send(p.client, "ping"))
  end)

  it("key_update and export_keying_material before the handshake fail with a reason", function()
    local conn = pair.client_context():new_conn { server_name = "localhost" }
    assert.same({ nil, "key_update: the handshake is not done", "protocol" }, { conn:key_update() })
    local _, message, code = conn:export_keying_material("EXPORTER-x", 16)
    assert.equal("protocol", code)
    assert.matches("^export_keying_material: ", message)
    for _, m in ipairs { "version", "cipher", "alpn_selected", "peer_certificate", "session" } do
      assert.is_nil(conn[m](conn), m)
    end
  end)

  it("write after our shutdown is refused; reading and finishing the shutdown still work", function()
    local p = connected()
    assert.equal(5, p.server.conn:write("later")) -- the server has not shut down yet
    assert.equal("want_read", p.client.conn:shutdown())
    assert.same({ nil, "write: protocol is shutdown", "protocol" }, { p.client.conn:write("x") })
    assert.same({ nil, "write: protocol is shutdown", "protocol" }, { p.client.conn:write("x") })
    p:pump()
    assert.equal("later", p.client.conn:read()) -- what the peer sent before its close_notify
    assert.same({ nil, "closed" }, { p.server.conn:read() })
    assert.equal("done", p.server.conn:shutdown())
    p:pump()
    assert.same({ nil, "closed" }, { p.client.conn:read() })
    assert.equal("done", p.client.conn:shutdown())
  end)

  it("every I/O method after close raises; close stays idempotent", function()
    local p = connected()
    local conn = p.client.conn
    conn:close()
    for _, m in ipairs { "do_handshake", "read", "write", "shutdown", "key_update" } do
      assert.has_error(function() conn[m](conn, "x") end, "attempt to use a closed lunatls.Conn")
    end
    conn:close()
  end)

  it("switching roles mid-handshake gives documented results and no crash", function()
    for _, switch in ipairs { "set_accept_state", "set_connect_state" } do
      local p = pair.new()
      p.client.conn:do_handshake()
      p:pump()
      p.server.conn:do_handshake()
      p.client.conn[switch](p.client.conn)
      p.server.conn[switch](p.server.conn)
      local r = p:handshake()
      for _, side in ipairs { r.client, r.server } do
        if side.status ~= "done" then
          check.first_status("do_handshake", side.status, side.message, side.code, 3)
        end
      end
    end
  end)

  it("a context whose connections outlive it: they finish, callbacks included", function()
    local lines = 0
    local conns = {}
    do
      local server_ctx = pair.server_context { keylog = function() lines = lines + 1 end }
      local client_ctx = pair.client_context()
      for i = 1, 3 do
        local a, b = tls.new_bio_pair()
        conns[i] = { client_ctx:new_conn { bio = a, server_name = "localhost" }, server_ctx:new_conn { bio = b } }
      end
    end
    collectgarbage()
    collectgarbage()
    for _, c in ipairs(conns) do
      for _ = 1, 10 do
        c[1]:do_handshake()
        c[2]:do_handshake()
      end
      assert.equal("done", c[1]:do_handshake())
      assert.equal("done", c[2]:do_handshake())
      assert.equal(4, c[1]:write("ping"))
      assert.equal("ping", c[2]:read())
    end
    assert.is_true(lines >= 3 * 5)
  end)

  -- A connection cannot outlive its context's finalizer: it keeps the
  -- context alive, so both become garbage in the same cycle and Lua runs
  -- both finalizers, the connection's first. A finalizer that resurrects
  -- them finds both closed: methods raise, nothing crashes.
  it("a connection and its context resurrected after their finalizers raise 'closed'", function()
    local revived
    do
      local keeper = setmetatable({}, { __gc = function(self) revived = self end })
      keeper.ctx = pair.server_context { alpn = { "h2" }, keylog = function() end }
      keeper.conn = keeper.ctx:new_conn()
      keeper.conn:do_handshake()
      keeper = nil -- luacheck: ignore
    end
    collectgarbage()
    collectgarbage()
    assert.is_truthy(revived)
    assert.has_error(function() revived.conn:do_handshake() end, "attempt to use a closed lunatls.Conn")
    assert.has_error(function() revived.ctx:new_conn() end, "attempt to use a closed lunatls.Context")
    assert.equal("lunatls.Conn (closed)", tostring(revived.conn))
    assert.equal("lunatls.Context (closed)", tostring(revived.ctx))
  end)
end)

describe("coroutines abandoned mid-handshake", function()
  it("core: a handshake yielding on want_read, abandoned, collected (200 times)", function()
    local server_ctx, client_ctx = pair.server_context { keylog = function() end },
      pair.client_context { keylog = function() end }
    for i = 1, 200 do
      local a, b = tls.new_bio_pair()
      local client = client_ctx:new_conn { bio = a, server_name = "localhost" }
      local server = server_ctx:new_conn { bio = b }
      local co = coroutine.create(function()
        while true do
          local c, s = client:do_handshake(), server:do_handshake()
          if c == "done" and s == "done" then return end
          coroutine.yield()
        end
      end)
      for _ = 1, i % 4 do
        if coroutine.status(co) == "suspended" then assert(coroutine.resume(co)) end
      end
      co, client, server, a, b = nil, nil, nil, nil, nil -- luacheck: ignore
      if i % 20 == 0 then collectgarbage() end
    end
    collectgarbage()
  end)

  it("core: a connection driven by a coroutine that dies, then by another thread", function()
    local lines = {}
    local p = pair.new { client_ctx = pair.client_context { keylog = function(l) lines[#lines + 1] = l end } }
    local co = coroutine.wrap(function()
      p.client.conn:do_handshake()
      p:pump()
      p.server.conn:do_handshake()
      p:pump()
      coroutine.yield()
    end)
    co()
    co = nil -- luacheck: ignore
    collectgarbage()
    p:connect() -- the keylog callback now runs on the main thread
    assert.is_true(#lines > 0)
  end)

  it("stream layer: wrap over a memory pipe, handshake yields, abandoned, collected (100 times)", function()
    local client_ctx, server_ctx = pair.client_context(), pair.server_context()
    for i = 1, 100 do
      local a, b = memory.pipe()
      local client = tls.wrap(a, client_ctx, { server_name = "localhost" })
      local server = tls.wrap(b, server_ctx)
      local cc = coroutine.create(function() return client:handshake() end)
      local sc = coroutine.create(function() return server:handshake() end)
      for _ = 1, i % 3 do
        coroutine.resume(cc)
        coroutine.resume(sc)
      end
      if i % 2 == 0 then
        coroutine.close(cc)
        coroutine.close(sc)
      end
      cc, sc, client, server = nil, nil, nil, nil -- luacheck: ignore
      if i % 10 == 0 then collectgarbage() end
    end
    collectgarbage()
  end)

  it("stream layer: a send abandoned while suspended makes later sends time out, not hang", function()
    local a = memory.pipe()
    local stream = tls.wrap(a, pair.client_context(), { server_name = "localhost", timeout = 0.05 })
    local abandoned = coroutine.create(function() return stream:send("hello") end)
    assert(coroutine.resume(abandoned)) -- waits for the handshake, holding the writer's turn
    local co = coroutine.create(function() return stream:send("again") end)
    local result = { coroutine.resume(co) }
    assert.same({ true, nil, "timeout", "timeout", 0 }, result)
    stream:close()
  end)

  it("stream layer: a writer coroutine closed with coroutine.close gives its turn back", function()
    local a = memory.pipe()
    local stream = tls.wrap(a, pair.client_context(), { server_name = "localhost", timeout = 0.05 })
    local first = coroutine.create(function() return stream:send("hello") end)
    assert(coroutine.resume(first))
    assert.is_true(coroutine.close(first))
    local second = coroutine.create(function() return stream:send("again") end)
    local ok, what = coroutine.resume(second)
    assert.is_true(ok)
    assert.equal("event", what) -- it got the turn and waits for the handshake itself
    stream:close()
  end)

  it("<close> variables in a coroutine closed with coroutine.close", function()
    local conn_seen
    local co = coroutine.create(function()
      local conn <close> = pair.client_context():new_conn { server_name = "localhost" }
      conn_seen = conn
      conn:do_handshake()
      coroutine.yield()
    end)
    assert(coroutine.resume(co))
    assert.is_true(coroutine.close(co))
    assert.equal("lunatls.Conn (closed)", tostring(conn_seen))
  end)
end)

describe("finalizers that close objects while they are in use", function()
  -- A finalizer runs at any allocation of any call: one that closes the very
  -- object being used must leave that call with a result or a "closed" raise.
  local function saboteur(object)
    setmetatable({}, { __gc = function() object:close() end })
  end

  local function with_aggressive_gc(fn)
    collectgarbage("incremental", 1, 1000, 1)
    local ok, err = pcall(fn)
    collectgarbage("incremental", 200, 100, 13)
    collectgarbage("generational")
    assert(ok, err)
  end

  local function closed_or_result(fn, ...)
    local ok, err = pcall(fn, ...)
    if not ok then assert.matches("attempt to use a closed lunatls%.%a+$", err) end
  end

  it("read, peer_chain, peer_certificate, session, exporter, bio:read", function()
    with_aggressive_gc(function()
      for _ = 1, 60 do
        local p = connected()
        local conn = p.client.conn
        assert(p.server.conn:write(string.rep("z", 40000)))
        p:pump()
        saboteur(conn)
        for _, call_it in ipairs {
          function() return conn:read(100000) end, function() return conn:peer_chain() end,
          function() return conn:peer_certificate() end, function() return conn:session() end,
          function() return conn:export_keying_material("EXPORTER-x", 64) end,
        } do
          closed_or_result(call_it)
        end
        local a, b = tls.new_bio_pair(64 * 1024)
        b:write(string.rep("y", 30000))
        saboteur(a)
        closed_or_result(function() return a:read() end)
        closed_or_result(function() return a:read(10) end)
      end
    end)
  end)
end)
