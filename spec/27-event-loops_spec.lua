-- lunatls.transport.cqueues and lunatls.transport.luv: the same checks on
-- each loop, over TCP on 127.0.0.1 (handshake, echo, timeouts, close,
-- errors), every run bounded in time.

local tls = require "lunatls"
local socket = require "socket"
local scheduler = require "lunatls.scheduler"

local F = "spec/fixtures/"
local gettime = socket.gettime
local server_ctx = assert(tls.new_context {
  mode = "server", certificate = F .. "server.pem", key = F .. "server.key",
})
local client_ctx = assert(tls.new_context { mode = "client", cafile = F .. "ca.pem" })
local other_ctx = assert(tls.new_context { mode = "client", cafile = F .. "otherca.pem" })

-- Each loop: its transport module and a runner taking task functions
-- (each gets `spawn`), returning true or raising.
-- Under valgrind or the gcstress collector everything runs 10 to 50 times
-- slower: the per-call and per-run bounds grow with it (bounds only).
local SCALE = os.getenv("LUNATLS_SANITIZER") and 10 or 1

local LOOPS = {}

LOOPS.cqueues = function()
  local cqueues = require "cqueues"
  local module = require "lunatls.transport.cqueues"
  return module, function(seconds, ...)
    local cq = cqueues.new()
    local errors = {}
    local function spawn(fn)
      cq:wrap(function() local ok, err = xpcall(fn, debug.traceback) if not ok then errors[#errors + 1] = err end end)
    end
    for _, fn in ipairs { ... } do spawn(function() fn(spawn) end) end
    local deadline = gettime() + seconds
    while not cq:empty() do
      assert(gettime() < deadline, "the cqueues run did not finish in time")
      local ok, err = cq:step(0.1)
      assert(ok, err)
    end
    assert(#errors == 0, table.concat(errors, "\n"))
  end, module.accept, function(l) l:close() end, cqueues.sleep
end

LOOPS.luv = function()
  local uv = scheduler.luv()
  local module = require "lunatls.transport.luv"
  return module, function(seconds, ...)
    local errors, live = {}, 0
    local function spawn(fn)
      live = live + 1
      coroutine.wrap(function()
        local ok, err = xpcall(fn, debug.traceback)
        if not ok then errors[#errors + 1] = tostring(err) end
        live = live - 1
      end)()
    end
    for _, fn in ipairs { ... } do spawn(function() fn(spawn) end) end
    local deadline = gettime() + seconds
    local guard = uv.new_timer()
    guard:start(100, 100, function() if live == 0 or gettime() > deadline then uv.stop() end end)
    if live > 0 then uv.run() end
    guard:close()
    uv.run("nowait")
    assert(live == 0, "the luv run did not finish in time")
    assert(#errors == 0, table.concat(errors, "\n"))
  end, module.accept, module.close_listener, module.sleep
end

local function listen()
  local listener = assert(socket.bind("127.0.0.1", 0))
  local _, port = listener:getsockname()
  return listener, tonumber(port)
end

for _, name in ipairs { "cqueues", "luv" } do
  describe("lunatls.transport." .. name, function()
    local module, run, accept, close_listener, sleep = LOOPS[name]()

    local function connect(port, ctx, opts)
      local sock = assert(socket.connect("127.0.0.1", port))
      local o = { server_name = "localhost", timeout = 10 * SCALE }
      for k, v in pairs(opts or {}) do o[k] = v end
      return tls.wrap(module.new(sock), ctx or client_ctx, o)
    end

    it("handshakes and echoes 1 MiB with a reader and a writer on one stream, then close_notify", function()
      local listener, port = listen()
      local data = ("0123456789abcdef"):rep(65536)
      local echoed, got, ending
      run(30 * SCALE, function()
        local t = assert(accept(listener, gettime() + 10 * SCALE))
        close_listener(listener)
        local stream = tls.wrap(t, server_ctx, { timeout = 10 * SCALE })
        echoed = 0
        while true do
          local chunk, _, code = stream:receive_some()
          if not chunk then ending = code break end
          assert(stream:send(chunk))
          echoed = echoed + #chunk
        end
        stream:close()
      end, function(spawn)
        local stream = connect(port)
        assert(stream:handshake())
        assert.equal("TLSv1.3", stream:version())
        local sent = false
        spawn(function() assert(stream:send(data)) sent = true end)
        got = assert(stream:receive(#data))
        assert.is_true(sent)
        stream:close()
      end)
      assert.equal(#data, echoed)
      assert.is_true(got == data)
      assert.equal("closed", ending)
    end)

    it("a silent peer: receive gives nil, 'timeout' within the deadline, the stream goes on", function()
      local listener, port = listen()
      local result, elapsed, later
      run(30 * SCALE, function()
        local t = assert(accept(listener, gettime() + 10 * SCALE))
        close_listener(listener)
        local stream = tls.wrap(t, server_ctx, { timeout = 10 * SCALE })
        assert(stream:handshake())
        sleep(0.6)
        assert(stream:send("late\n"))
        assert.equal("bye", stream:receive())
        stream:close()
      end, function()
        local stream = connect(port, nil, { timeout = 0.3 })
        assert(stream:handshake())
        local started = gettime()
        result = { stream:receive() }
        elapsed = gettime() - started
        stream:settimeout(10)
        later = stream:receive()
        assert(stream:send("bye\n"))
        stream:close()
      end)
      assert.same({ nil, "timeout", "timeout" }, result)
      assert.is_true(elapsed >= 0.25 and elapsed < 2, "elapsed " .. elapsed)
      assert.equal("late", later)
    end)

    it("a certificate that does not verify: nil, message, 'verify'; the server sees a failure", function()
      local listener, port = listen()
      local client_result, server_result
      run(30 * SCALE, function()
        local t = assert(accept(listener, gettime() + 10 * SCALE))
        close_listener(listener)
        local stream = tls.wrap(t, server_ctx, { timeout = 10 * SCALE })
        server_result = { stream:handshake() }
        stream:close()
      end, function()
        local stream = connect(port, other_ctx)
        client_result = { stream:handshake() }
        stream:close()
      end)
      assert.is_nil(client_result[1])
      assert.equal("verify", client_result[3])
      assert.is_nil(server_result[1])
    end)

    it("a peer that drops the connection mid-handshake: nil, message, 'eof'", function()
      local listener, port = listen()
      local result
      run(30 * SCALE, function()
        local t = assert(accept(listener, gettime() + 10 * SCALE))
        close_listener(listener)
        local stream = tls.wrap(t, server_ctx, { timeout = 10 * SCALE })
        result = { stream:handshake() }
        stream:close()
      end, function()
        local raw = assert(socket.connect("127.0.0.1", port))
        raw:send("\22\3\1\0\5hello") -- a piece of a record, then gone
        raw:close()
      end)
      assert.is_nil(result[1])
      assert.is_truthy(result[3] == "eof" or result[3] == "protocol", tostring(result[3]))
    end)

    -- new() gives OpenSSL the descriptor (the fd transport), unless LuaSocket
    -- holds bytes it read ahead: a STARTTLS server that read its line got
    -- the start of the ClientHello with it, which must reach OpenSSL first
    it("new(): the fd transport, or the socket transport while LuaSocket holds bytes (STARTTLS)", function()
      local listener, port = listen()
      local kinds, line = {}, nil
      run(30 * SCALE, function()
        local sock = assert(socket.connect("127.0.0.1", port))
        assert(sock:send("STARTTLS\n"))
        local stream = tls.wrap(module.new(sock), client_ctx, { server_name = "localhost", timeout = 10 * SCALE })
        kinds.client = getmetatable(stream.transport).__name
        assert(stream:handshake())
        assert(stream:send("hello\n"))
        assert(stream:close())
      end, function()
        listener:settimeout(0)
        local sock = listener:accept()
        while not sock do sleep(0.01); sock = listener:accept() end
        close_listener(listener)
        sock:settimeout(0)
        -- the client sends its line and its ClientHello without a yield between
        line = sock:receive("*l")
        while not line do sleep(0.01); line = sock:receive("*l") end
        assert.is_true(sock:dirty(), "the ClientHello did not come with the line")
        local t = module.new(sock)
        kinds.server = getmetatable(t).__name
        local stream = tls.wrap(t, server_ctx, { timeout = 10 * SCALE })
        assert(stream:handshake())
        assert.equal("hello", stream:receive())
        stream:close()
      end)
      assert.equal("STARTTLS", line)
      assert.same({ client = "lunatls.transport.fd", server = "lunatls.transport.socket" }, kinds)
    end)

    it("close() is idempotent, later calls raise, and new() checks its argument", function()
      local listener, port = listen()
      run(30 * SCALE, function()
        local t = assert(accept(listener, gettime() + 10 * SCALE))
        close_listener(listener)
        local stream = tls.wrap(t, server_ctx, { timeout = 10 * SCALE })
        assert.equal("x", stream:receive())
        stream:close()
      end, function()
        local stream = connect(port)
        assert(stream:send("x\n"))
        assert.is_true(stream:close())
        assert.is_true(stream:close())
        assert.has_error(function() stream:send("y") end, "attempt to use a closed lunatls.Stream")
      end)
      assert.has_error(function() module.new(42) end)
    end)
  end)
end

describe("lunatls.transport.luv with a stale loop clock", function()
  it("a wait and a sleep last what they were given, however long since the loop last ran", function()
    -- libuv caches its clock at each loop iteration; Lua work outside
    -- uv.run leaves it behind (here 0.4 s). A timer counted from it fired
    -- at once: a stream's 10 s wait timed out at its start (spec/27's echo
    -- failed after a long spec file, with luv loaded for the whole run).
    local uv = scheduler.luv()
    local module = require "lunatls.transport.luv"
    local listener = assert(socket.bind("127.0.0.1", 0))
    local ip, port = listener:getsockname()
    local sock = assert(socket.connect(ip, port))
    local peer = assert(listener:accept())
    local transport = module.new(sock)
    local waited, slept, result
    uv.run("nowait")
    socket.sleep(0.4) -- the loop's clock falls behind
    coroutine.wrap(function()
      local t0 = gettime()
      result = { transport:wait("read", gettime() + 0.3) } -- nothing will arrive
      waited = gettime() - t0
      t0 = gettime()
      module.sleep(0.2)
      slept = gettime() - t0
    end)()
    local guard = uv.new_timer()
    guard:start(3000, 0, function() uv.stop() end)
    while not slept and guard:is_active() do uv.run("once") end
    guard:close()
    transport:close()
    peer:close()
    listener:close()
    uv.run("nowait")
    assert.same({ nil, "timeout" }, result)
    assert.is_true(waited >= 0.25, "the wait ended after " .. tostring(waited) .. " s")
    assert.is_true(slept >= 0.15, "the sleep ended after " .. tostring(slept) .. " s")
  end)
end)
