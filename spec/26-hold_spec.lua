-- Issue 10's defects, each on real sockets or memory pipes: a callback that
-- raises fails its connection only; close() delivers everything sent before
-- it (64 MiB upload, TLS 1.3, BIO and fd mode over TCP); a long line is
-- refused in linear time; a second reader raises; default timeouts; TLS 1.3
-- over a small pipe with a client that sends before it reads.

local tls = require "lunatls"
local socket = require "socket"
local scheduler = require "lunatls.scheduler"
local memory = require "lunatls.transport.memory"
local stream_module = require "lunatls.stream"

local F = "spec/fixtures/"
local gettime = socket.gettime

local server_ctx = assert(tls.new_context {
  mode = "server", certificate = F .. "server.pem", key = F .. "server.key",
})
local client_ctx = assert(tls.new_context { mode = "client", cafile = F .. "ca.pem" })

local function run(seconds, ...)
  local errors = {}
  local sched = scheduler.new { on_error = function(err) errors[#errors + 1] = tostring(err) end }
  for _, fn in ipairs { ... } do sched:spawn(fn, sched) end
  local ok, err = sched:run(seconds)
  assert(ok, "the run failed: " .. tostring(err) .. "\n" .. table.concat(errors, "\n"))
end

local function listen()
  local listener = assert(socket.bind("127.0.0.1", 0))
  local _, port = listener:getsockname()
  return listener, tonumber(port)
end

local function pipe_pair(pipe_opts, copts, sopts)
  local a, b = memory.pipe(pipe_opts)
  local c = { server_name = "localhost", timeout = 10 }
  for k, v in pairs(copts or {}) do c[k] = v end
  local s = { timeout = 10 }
  for k, v in pairs(sopts or {}) do s[k] = v end
  return tls.wrap(a, client_ctx, c), tls.wrap(b, server_ctx, s)
end

-- Tens of megabytes through TLS take minutes under memcheck or the
-- gcstress collector: those tests skip themselves there, explicitly.
local sanitizer = os.getenv("LUNATLS_SANITIZER")
local slowed = sanitizer == "valgrind" or sanitizer == "gcstress"
local it_bulk = slowed and pending or it

describe("issue 10", function()
  for _, fd in ipairs { false, true } do
    it_bulk(("close() after a 64 MiB upload-only send delivers it all, then close_notify (TLS 1.3, %s mode)")
       :format(fd and "fd" or "BIO"), function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local size, piece = 64 * 1024 * 1024, ("x"):rep(1024 * 1024)
      local received, ending = 0, nil
      run(60, function()
        local server = assert(tls.accept(listener, server_ctx, { timeout = 30, fd = fd }))
        while true do
          local data, message, code = server:receive_some(65536)
          if not data then ending = { message, code } break end
          received = received + #data
        end
        server:close()
      end, function()
        local client = assert(tls.connect("127.0.0.1", port, client_ctx,
          { timeout = 30, fd = fd, server_name = "localhost" }))
        assert.equal("TLSv1.3", client:version())
        for _ = 1, size // #piece do assert(client:send(piece)) end
        client:close()
      end)
      assert.equal(size, received)
      assert.same({ "closed", "closed" }, ending)
    end)
  end

  it("a servername callback that raises fails that connection only ('callback'), "
     .. "and the server goes on", function()
    local ctx = assert(tls.new_context {
      mode = "server", certificate = F .. "server.pem", key = F .. "server.key",
      servername = function(name)
        if name == "bad.example" then error("no such host: " .. name) end
      end,
    })
    local listener, port = listen()
    finally(function() listener:close() end)
    local outcomes = {}
    run(30, function(sched)
      for _ = 1, 2 do
        local transport = assert(require("lunatls.transport.socket").accept(listener, gettime() + 10))
        local stream = tls.wrap(transport, ctx, { timeout = 10 })
        sched:spawn(function()
          local ok, message, code = stream:handshake()
          if ok then
            ok = stream:send(assert(stream:receive()) .. "\n")
            outcomes.good = ok and "served"
          else
            outcomes.bad = { message, code }
          end
          stream:close()
        end)
      end
    end, function()
      local bad = tls.connect("127.0.0.1", port, client_ctx,
        { timeout = 10, server_name = "bad.example", fd = false })
      assert.is_nil(bad)
      local good = assert(tls.connect("127.0.0.1", port, client_ctx,
        { timeout = 10, server_name = "localhost" }))
      assert(good:send("hello\n"))
      assert.equal("hello", good:receive())
      good:close()
    end)
    assert.equal("served", outcomes.good)
    assert.equal("callback", outcomes.bad[2])
    assert.matches("no such host: bad.example", outcomes.bad[1])
  end)

  for _, backend in ipairs { "epoll", "luv", "select" } do
    it("out of descriptors (EMFILE), the server backs off and serves again afterwards ("
       .. backend .. " backend)", function()
      local process = require "helpers.process"
      local server = process.spawn("ulimit -n 48 && LUNATLS_BACKEND=" .. backend
        .. " exec lua5.4 spec/helpers/hold_server.lua scheduler")
      finally(function() server:kill() end)
      assert(server:wait_output("ready", 10), server:output())
      local port = tonumber(server:output():match("ready (%d+)"))
      local idle = {}
      for i = 1, 80 do -- more than the server can hold
        local sock = socket.tcp()
        sock:settimeout(5)
        assert(sock:connect("127.0.0.1", port))
        idle[i] = sock
      end
      socket.sleep(0.5) -- the server has hit EMFILE by now, and backs off
      assert(server:alive(), server:output())
      for _, sock in ipairs(idle) do sock:close() end
      local answer
      run(20, function()
        local stream = assert(tls.connect("127.0.0.1", port, client_ctx,
          { server_name = "localhost", timeout = 10 }))
        assert(stream:send("still here?\n"))
        answer = stream:receive()
        stream:close()
      end)
      assert.equal("still here?", answer)
      assert(server:alive(), server:output())
    end)
  end

  it_bulk("a line longer than max_line fails with 'limit', in linear time", function()
    local client, server = pipe_pair({}, nil, { max_line = 4 * 1024 * 1024 })
    local result, elapsed
    run(60, function()
      local chunk = ("a"):rep(65536)
      for _ = 1, 80 do -- 5 MiB without an end of line
        if not client:send(chunk) then break end
      end
      client:close()
    end, function()
      local started = gettime()
      result = { server:receive() }
      elapsed = gettime() - started
      server:close()
    end)
    assert.is_nil(result[1])
    assert.equal("limit", result[3])
    assert.matches("max_line", result[2])
    assert.is_true(elapsed < 5, "took " .. elapsed)
  end)

  it_bulk("a 8 MiB line within the limit arrives whole, in linear time", function()
    local client, server = pipe_pair({}, nil, { max_line = 16 * 1024 * 1024 })
    local line = ("b"):rep(8 * 1024 * 1024)
    local got
    local started = gettime()
    run(60, function() assert(client:send(line .. "\nnext\n")) end,
      function() got = { server:receive(), server:receive() } end)
    assert.is_true(got[1] == line)
    assert.equal("next", got[2])
    assert.is_true(gettime() - started < 10)
  end)

  it("a second coroutine receiving from the same stream raises", function()
    local client, server = pipe_pair()
    local second
    run(30, function(sched)
      sched:spawn(function() server:receive() end)
      scheduler.sleep(0.05)
      second = { pcall(server.receive, server) }
      client:send("done\n")
    end)
    assert.is_false(second[1])
    assert.matches("another coroutine is receiving", second[2])
  end)

  it("defaults: a silent client gets the handshake deadline, and wrap takes the limits", function()
    if not slowed then -- (scaled under valgrind and gcstress: spec/helpers/robust.lua)
      assert.equal(10, stream_module.defaults.handshake_timeout)
      assert.equal(60, stream_module.defaults.idle_timeout)
    end
    local listener, port = listen()
    finally(function() listener:close() end)
    local result, elapsed
    local raw
    run(30, function()
      local started = gettime()
      -- no timeout given: the handshake deadline applies (shortened here)
      local transport = assert(require("lunatls.transport.socket").accept(listener, gettime() + 10))
      local stream = tls.wrap(transport, server_ctx, { handshake_timeout = 0.3 })
      result = { stream:handshake() }
      elapsed = gettime() - started
      stream:close()
    end, function()
      raw = assert(socket.connect("127.0.0.1", port)) -- connects, never speaks
    end)
    raw:close()
    assert.same({ nil, "timeout", "timeout" }, result)
    assert.is_true(elapsed < 2)
    assert.has_error(function() tls.wrap(memory.pipe(), server_ctx, { max_line = -1 }) end,
      "wrap: option 'max_line' must be a positive number or false")
  end)

  it("an idle timeout ends a wait without progress even with no per-call timeout", function()
    local client, server = pipe_pair(nil, { timeout = false }, { idle_timeout = 0.2 })
    client.timeout, server.timeout = nil, nil
    local result
    run(30, function() assert(client:handshake()) end, function()
      assert(server:handshake())
      result = { server:receive() }
    end)
    assert.same({ nil, "timeout", "timeout" }, result)
  end)

  it("TLS 1.3 over a 300-byte pipe: a client that sends 512 KiB before it reads", function()
    local client, server = pipe_pair({ capacity = 300 })
    local got
    local data = ("z"):rep(512 * 1024)
    run(60, function()
      assert(client:send(data))
      assert(client:send("\n"))
      assert.equal("ok", client:receive())
    end, function()
      got = server:receive()
      assert(server:send("ok\n"))
    end)
    assert.is_true(got == data)
  end)
end)
