-- Timeouts, deadlines and vanishing peers on real TCP sockets, with the
-- LuaSocket transport and with the fd transport (OpenSSL on the socket),
-- and receive(n) on each (the fd transport's has a short path of its own).
-- A timeout gives nil, "timeout" and leaves the stream usable; a peer that
-- drops the connection mid-handshake gives nil, message, "eof".

local tls = require "lunatls"
local socket = require "socket"
local scheduler = require "lunatls.scheduler"
local socket_transport = require "lunatls.transport.socket"
local fd_transport = require "lunatls.transport.fd"
local split_server = require "helpers.split_server"
local process = require "helpers.process"
local link = require "helpers.link"

local F = "spec/fixtures/"
local server_ctx = assert(tls.new_context {
  mode = "server", certificate = F .. "server.pem", key = F .. "server.key",
})
local client_ctx = assert(tls.new_context { mode = "client", cafile = F .. "ca.pem" })

local gettime = socket.gettime

local function run(...)
  local sched = scheduler.new()
  for _, fn in ipairs { ... } do sched:spawn(fn) end
  assert(sched:run(30), "the coroutines did not finish in time")
end

local function listen()
  local listener = assert(socket.bind("127.0.0.1", 0))
  local _, port = listener:getsockname()
  return listener, tonumber(port)
end

-- A transport of the kind under test over a LuaSocket socket.
local MAKE = {
  -- attached: OpenSSL on the socket's descriptor, checked before each call
  socket = function(sock) return socket_transport.new(sock) end,
  -- not attached, as while LuaSocket holds bytes it read ahead: the stream
  -- moves the bytes between the connection's BIO pair and the socket
  ["socket (bytes moved)"] = function(sock)
    local transport = socket_transport.new(sock)
    transport.attach = false
    return transport
  end,
  fd = function(sock) return fd_transport.new(sock) end,
  -- the connection takes the descriptor; the socket object lets go of it
  ["fd (adopted)"] = function(sock) return fd_transport.adopt(sock) end,
}
-- ... and the same choice in tls.connect/tls.accept's option fd
local FD_OPTION = { socket = false, ["socket (bytes moved)"] = false, fd = true, ["fd (adopted)"] = "adopt" }

-- The accepted (raw) TCP socket, waiting through the scheduler.
local function accept_raw(listener)
  return assert(socket_transport.accept(listener, gettime() + 10)).socket
end

for _, kind in ipairs { "socket", "socket (bytes moved)", "fd", "fd (adopted)" } do
  local make = MAKE[kind]

  describe(kind .. " transport:", function()
    it("receive(n) gives exactly n bytes from inside a record and across records, the rest kept; "
       .. "receive_some gives buffered bytes first", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local got = {}
      run(function()
        local server = tls.wrap(make(accept_raw(listener)), server_ctx, { timeout = 10 })
        assert(server:send("abcdefghij")) -- one record
        for _, part in ipairs { "kl", "mn", "op", "line\nmo" } do assert(server:send(part)) end
        assert.equal("go", server:receive(2)) -- the client has read the line
        assert(server:send("re"))
        server:close()
      end, function()
        local tcp = assert(socket_transport.connect("127.0.0.1", port)).socket
        local client = tls.wrap(make(tcp), client_ctx, { server_name = "localhost", timeout = 10 })
        got[1] = client:receive(4)      -- the rest of the record stays inside OpenSSL
        got[2] = client:receive(6, ">") -- ... and comes next, after the prefix
        got[3] = client:receive(5)      -- three records, maybe not all here yet
        got[4] = client:receive(1)
        got[5] = client:receive()       -- "line": "mo" stays buffered in the stream
        assert(client:send("go"))
        scheduler.sleep(0.1)            -- "re" is in the socket now
        local rest = {} -- the buffered bytes before the next record's
        for part in function() return client:receive_some(100) end do rest[#rest + 1] = part end
        got[6] = table.concat(rest)
        got[7] = { client:receive(1) }  -- then the close_notify
        client:close()
      end)
      assert.same({ "abcd", ">efghij", "klmno", "p", "line", "more", { nil, "closed", "closed", "" } }, got)
    end)

    it("send(data, i, j) on an established stream sends exactly the slice; send(data) all of it", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local results, got = {}, nil
      run(function()
        local server = tls.wrap(make(accept_raw(listener)), server_ctx, { timeout = 10 })
        got = server:receive(22)
        server:close()
      end, function()
        local tcp = assert(socket_transport.connect("127.0.0.1", port)).socket
        local client = tls.wrap(make(tcp), client_ctx, { server_name = "localhost", timeout = 10 })
        assert(client:handshake())
        results = { client:send("0123456789", 1, 9), client:send("0123456789", 2),
                    client:send("abc", 3, -1), client:send("xyz"), client:send("xyz", 4) }
        client:close()
      end)
      assert.same({ 9, 10, 3, 3, 3 }, results)
      assert.equal("012345678123456789cxyz", got)
    end)

    it("records that arrived together come out one receive at a time, without waiting; "
       .. "dirty() says they are there", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local got = {}
      run(function()
        local server = tls.wrap(make(accept_raw(listener)), server_ctx, { timeout = 10 })
        assert(server:send("first"))
        assert(server:send("second")) -- a record of its own
        assert.equal("ok", server:receive(2)) -- nothing more until the client answers
        server:close()
      end, function()
        local tcp = assert(socket_transport.connect("127.0.0.1", port)).socket
        local client = tls.wrap(make(tcp), client_ctx, { server_name = "localhost", timeout = 2 })
        assert(client:handshake())
        scheduler.sleep(0.2) -- both records are in the socket by now
        got[1] = client:receive(5)
        got[2] = client:dirty()
        -- the socket is empty now (fd: OpenSSL read ahead; socket: the
        -- driver moved it all): a wait here would time out
        got[3] = client:receive(6)
        got[4] = client:dirty()
        assert(client:send("ok"))
        client:close()
      end)
      assert.same({ "first", true, "second", false }, got)
    end)

    it("part of a record arrived: dirty() is false (a wait on the socket is right), "
       .. "then the rest comes through receive", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local got = {}
      run(function()
        local server = split_server.new(server_ctx, accept_raw(listener))
        while not server:handshake_step() do scheduler.sleep(0.005) end
        server:send_split("hello", 10, function() scheduler.sleep(0.5) end)
        scheduler.sleep(0.2)
        server:close()
      end, function()
        local tcp = assert(socket_transport.connect("127.0.0.1", port)).socket
        local client = tls.wrap(make(tcp), client_ctx, { server_name = "localhost", timeout = 5 })
        assert(client:handshake())
        scheduler.sleep(0.2) -- the tickets and 10 bytes of the record are in the socket
        client:settimeout(0)
        got[1] = { client:receive(5) } -- takes them in: OpenSSL (or the BIO pair) holds the part
        got[2] = client:dirty()
        client:settimeout(5)
        got[3] = client:receive(5)
        got[4] = client:dirty()
      end)
      assert.same({ { nil, "timeout", "timeout" }, false, "hello", false }, got)
    end)

    it("a connection reset while the stream is idle: receive reports it (nil, message, code), "
       .. "and keeps saying so", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local got
      run(function()
        local server = split_server.new(server_ctx, accept_raw(listener))
        while not server:handshake_step() do scheduler.sleep(0.005) end
        for _ = 1, 5 do server:pump(); scheduler.sleep(0.01) end -- the tickets, read by now
        scheduler.sleep(0.2)
        server.sock:setoption("linger", { on = true, timeout = 0 })
        server:close() -- a reset, not a FIN
      end, function()
        local tcp = assert(socket_transport.connect("127.0.0.1", port)).socket
        local client = tls.wrap(make(tcp), client_ctx, { server_name = "localhost", timeout = 5 })
        assert(client:handshake())
        scheduler.sleep(0.1)
        client:settimeout(0)
        assert.same({ nil, "timeout", "timeout" }, { client:receive(5) }) -- takes the tickets in
        client:settimeout(5)
        scheduler.sleep(0.3) -- the reset has arrived
        got = { client:receive(5) }
        got.again = { client:receive(5) }
      end)
      -- the transport's words for it: the socket transport's when it moves the
      -- bytes (what LuaSocket's descriptor said), or OpenSSL's system call
      -- error over a descriptor (the socket transport attached too)
      local expected = kind == "socket (bytes moved)" and { "receive: the peer closed the connection", "eof" }
                       or { "reset by peer", "syscall" }
      assert.is_nil(got[1])
      assert.matches(expected[1], got[2], 1, true)
      assert.equal(expected[2], got[3])
      assert.same({ nil, got[2], got[3] }, { got.again[1], got.again[2], got.again[3] })
    end)

    it("a stream that keeps finding data lets the other tasks run (every 256 KiB), "
       .. "so one busy peer does not hold up the rest", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local SIZE = 2 * 1024 * 1024 -- fits in loopback's socket buffers: no read waits
      local ticks, ticks_while_reading, done = 0, nil, false
      run(function()
        local server = tls.wrap(make(accept_raw(listener)), server_ctx, { timeout = 10 })
        local chunk = string.rep("x", 16384)
        for _ = 1, SIZE // #chunk do assert(server:send(chunk)) end
        assert.equal("ok", server:receive(2))
        server:close()
      end, function()
        local tcp = assert(socket_transport.connect("127.0.0.1", port)).socket
        local client = tls.wrap(make(tcp), client_ctx, { server_name = "localhost", timeout = 10 })
        assert(client:handshake())
        scheduler.sleep(0.5) -- everything sent is in the sockets by now
        local before, got = ticks, 0
        while got < SIZE do got = got + #assert(client:receive_some(65536)) end
        ticks_while_reading = ticks - before
        assert(client:send("ok"))
        client:close()
        done = true
      end, function()
        while not done do
          ticks = ticks + 1
          scheduler.pause()
        end
      end)
      -- 2 MiB read without a wait: a turn for the others every 256 KiB
      assert.is_true(ticks_while_reading >= 4, "the others ran " .. ticks_while_reading .. " times")
    end)

    it("a stream that keeps sending without a wait lets the other tasks run (every 256 KiB)",
       function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local SIZE = 2 * 1024 * 1024 -- the socket buffers take it all: no send waits
      local ticks, ticks_while_sending, done, got = 0, nil, false, 0
      run(function()
        local server = tls.wrap(make(accept_raw(listener)), server_ctx, { timeout = 10 })
        assert(server:handshake())
        while got < SIZE do got = got + #assert(server:receive_some(65536)) end
        server:close()
      end, function()
        local tcp = assert(socket_transport.connect("127.0.0.1", port)).socket
        local client = tls.wrap(make(tcp), client_ctx, { server_name = "localhost", timeout = 10 })
        assert(client:handshake())
        local before, chunk = ticks, string.rep("x", 16384)
        for _ = 1, SIZE // #chunk do assert(client:send(chunk)) end
        ticks_while_sending = ticks - before
        done = true
        client:close()
      end, function()
        while not done do
          ticks = ticks + 1
          scheduler.pause()
        end
      end)
      assert.equal(SIZE, got)
      assert.is_true(ticks_while_sending >= 4, "the others ran " .. ticks_while_sending .. " times")
    end)

    it("a second coroutine receiving while the first waits raises, and takes nothing", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local client
      local got = {}
      run(function()
        local server = tls.wrap(make(accept_raw(listener)), server_ctx, { timeout = 10 })
        assert(server:handshake())
        scheduler.sleep(0.2) -- the client's first reader waits by now
        assert(server:send("xy"))
        -- the bytes are in the client's socket, its reader not yet woken:
        -- a second reader must not take them
        got.second = { pcall(client.receive, client, 1) }
        server:close()
      end, function()
        local tcp = assert(socket_transport.connect("127.0.0.1", port)).socket
        client = tls.wrap(make(tcp), client_ctx, { server_name = "localhost", timeout = 10 })
        assert(client:handshake())
        got.first = client:receive(2)
        client:close()
      end)
      assert.equal("xy", got.first)
      assert.is_false(got.second[1])
      assert.matches("another coroutine is receiving", got.second[2])
    end)

    it("a stalled server (accepts TCP, never speaks) gives nil, 'timeout' within the deadline; "
       .. "the handshake then resumes when it speaks", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local raw_server -- accepted, silent
      local results = {}
      run(function()
        raw_server = accept_raw(listener)
      end, function()
        local tcp = assert(socket_transport.connect("127.0.0.1", port)).socket
        local stream = tls.wrap(make(tcp), client_ctx, { server_name = "localhost", timeout = 0.3 })
        local started = gettime()
        results.first = { stream:handshake() }
        results.elapsed = gettime() - started
        results.stream = stream
      end)
      assert.same({ nil, "timeout", "timeout" }, results.first)
      assert.is_true(results.elapsed >= 0.29, "too early: " .. results.elapsed)
      assert.is_true(results.elapsed < 1.5, "too late: " .. results.elapsed)
      -- the stream is usable: once the server speaks, the handshake finishes
      local stream, got = results.stream, nil
      stream:settimeout(10)
      run(function()
        local server = tls.wrap(socket_transport.new(raw_server), server_ctx, { timeout = 10 })
        assert(server:handshake())
        got = server:receive("*l")
        server:close()
      end, function()
        assert(stream:handshake())
        assert(stream:send("still alive\n"))
        stream:close()
      end)
      assert.equal("still alive", got)
    end)

    it("a stalled client gives the server nil, 'timeout' within the deadline", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local raw_client, result, elapsed
      run(function()
        raw_client = assert(socket.connect("127.0.0.1", port))
      end, function()
        local started = gettime()
        result = { tls.accept(listener, server_ctx, { timeout = 0.3, fd = FD_OPTION[kind] }) }
        elapsed = gettime() - started
      end)
      raw_client:close()
      assert.same({ nil, "timeout", "timeout" }, result)
      assert.is_true(elapsed >= 0.29 and elapsed < 1.5, "elapsed " .. elapsed)
    end)

    it("a server that drops the connection mid-handshake gives nil, message, 'eof'", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local result, hello
      run(function()
        local raw = socket_transport.new(accept_raw(listener))
        assert(raw:wait("read", gettime() + 5))
        hello = raw:receive(5) -- the start of the ClientHello
        raw:close()
      end, function()
        local transport = assert(socket_transport.connect("127.0.0.1", port))
        local stream = tls.wrap(make(transport.socket), client_ctx,
          { server_name = "localhost", timeout = 5 })
        result = { stream:handshake() }
        -- clearly dead: the next call says the same
        result.again = { stream:send("x") }
        stream:close()
      end)
      assert.equal("\22\3", hello:sub(1, 2)) -- a handshake record did arrive
      assert.is_nil(result[1])
      assert.equal("eof", result[3])
      assert.matches("eof", result[2])
      assert.same({ nil, result[2], "eof", 0 }, result.again)
    end)

    it("a client that drops the connection mid-handshake gives the server nil, message, 'eof'", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local result
      run(function()
        local raw = assert(socket.connect("127.0.0.1", port))
        raw:send("\22\3\1\0\200\1\0\0") -- half a ClientHello header
        raw:close()
      end, function()
        result = { tls.accept(listener, server_ctx, { timeout = 5, fd = FD_OPTION[kind] }) }
      end)
      assert.is_nil(result[1])
      assert.equal("eof", result[3])
    end)

    it("a silent peer after the handshake: receive gives nil, 'timeout', keeps the partial "
       .. "data, and the stream goes on", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local server, steps = nil, {}
      run(function()
        server = assert(tls.accept(listener, server_ctx, { timeout = 10, fd = FD_OPTION[kind] }))
        assert(server:send("12345"))
      end, function()
        local stream = assert(tls.connect("127.0.0.1", port, client_ctx,
          { fd = FD_OPTION[kind], timeout = 0.3 }))
        local started = gettime()
        steps.first = { stream:receive(10) }
        steps.elapsed = gettime() - started
        steps.stream = stream
      end)
      assert.same({ nil, "timeout", "timeout" }, steps.first)
      assert.is_true(steps.elapsed >= 0.29 and steps.elapsed < 1.5, "elapsed " .. steps.elapsed)
      run(function()
        assert(server:send("67890"))
        assert(server:shutdown())
      end, function()
        steps.stream:settimeout(10)
        steps.second = steps.stream:receive(10)
        steps.after = { steps.stream:receive("*a") }
        steps.stream:close()
        server:close()
      end)
      assert.equal("1234567890", steps.second)
      assert.same({ "" }, steps.after)
    end)

    it("a peer that does not read: send gives nil, 'timeout', last; resending from last + 1 "
       .. "delivers every byte exactly once", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local data = ("0123456789abcdef"):rep(1024 * 1024) -- 16 MiB: more than the kernel buffers
      local server, client, first
      run(function()
        server = assert(tls.accept(listener, server_ctx, { timeout = 20, fd = FD_OPTION[kind] }))
      end, function()
        client = assert(tls.connect("127.0.0.1", port, client_ctx, { fd = FD_OPTION[kind], timeout = 0.5 }))
        first = { client:send(data) }
      end)
      assert.same({ nil, "timeout", "timeout" }, { first[1], first[2], first[3] })
      local last = first[4]
      assert.is_true(last > 0 and last < #data, "last " .. tostring(last))
      local received
      run(function()
        received = server:receive(#data)
        server:close()
      end, function()
        client:settimeout(20)
        assert.equal(#data, client:send(data, last + 1))
      end)
      client:close()
      assert.equal(#data, #received)
      assert.is_true(received == data, "the bytes differ")
    end)

    it("a deadline bounds several calls together", function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local results, server = {}, nil
      run(function()
        server = assert(tls.accept(listener, server_ctx, { timeout = 10, fd = FD_OPTION[kind] }))
      end, function()
        local stream = assert(tls.connect("127.0.0.1", port, client_ctx, { fd = FD_OPTION[kind], timeout = 10 }))
        stream:setdeadline(gettime() + 0.3)
        local started = gettime()
        results[1] = { stream:receive(1) }
        results[2] = { stream:receive(1) } -- the deadline has passed: at once
        results.elapsed = gettime() - started
        stream:close()
      end)
      server:close()
      assert.same({ nil, "timeout", "timeout" }, results[1])
      assert.same({ nil, "timeout", "timeout" }, results[2])
      assert.is_true(results.elapsed >= 0.29 and results.elapsed < 1.0, "elapsed " .. results.elapsed)
    end)
  end)
end

describe("fd transport, adopt", function()
  it("the socket object lets go of its descriptor once wrap made the connection, "
     .. "which closes it with the stream; a wrap that raises leaves it with the socket", function()
    local listener, port = listen()
    finally(function() listener:close() end)
    local tcp = assert(socket.tcp())
    finally(function() tcp:close() end)
    assert(tcp:connect("127.0.0.1", port))
    local fd = math.tointeger(tcp:getfd())
    assert.has_error(function() tls.wrap(fd_transport.adopt(tcp), client_ctx, { bogus = 1 }) end)
    assert.equal(fd, math.tointeger(tcp:getfd()))
    local stream = tls.wrap(fd_transport.adopt(tcp), client_ctx, { server_name = "localhost" })
    assert.equal(-1, math.tointeger(tcp:getfd()))
    assert.is_true(link.descriptor_open(fd))
    stream:close()
    assert.is_false(link.descriptor_open(fd))
    assert.has_error(function() fd_transport.adopt(fd) end,
      "bad argument #1 to 'adopt' (a socket expected, got number)")
    assert.has_error(function() tls.connect("127.0.0.1", port, client_ctx, { fd = "yes" }) end,
      "bad option 'fd' (true, false or \"adopt\" expected)")
  end)
end)

-- A connected pair of LuaSocket sockets (closed by `finally`) after a
-- STARTTLS line: the server has read the line, and LuaSocket holds the
-- ClientHello's first bytes ("\22\3\1") it read with it.
local function starttls_read_ahead()
  local listener, port = listen()
  finally(function() listener:close() end)
  local client = assert(socket.connect("127.0.0.1", port))
  finally(function() client:close() end)
  local server = assert(listener:accept())
  finally(function() server:close() end)
  assert(client:send("STARTTLS\n\22\3\1"))
  server:settimeout(5)
  assert.equal("STARTTLS", server:receive("*l"))
  return client, server
end

describe("fd transport, bytes LuaSocket read ahead", function()
  it("new and adopt refuse the socket (OpenSSL would never see them); fastest takes the socket transport", function()
    local _, server = starttls_read_ahead()
    assert.is_true(server:dirty())
    for _, name in ipairs { "new", "adopt" } do
      assert.has_error(function() fd_transport[name](server) end,
        "bad argument #1 to '" .. name .. "' (LuaSocket holds bytes it read ahead, which OpenSSL "
        .. "would never see: use fd.fastest or lunatls.transport.socket)")
    end
    assert.equal("lunatls.transport.socket", getmetatable(fd_transport.fastest(server)).__name)
    assert.equal("\22\3\1", server:receive(3)) -- still there
    assert.equal("lunatls.transport.fd", getmetatable(fd_transport.fastest(server)).__name)
  end)
end)

describe("connect and accept", function()
  -- the default is the fd transport (new sockets: nothing in LuaSocket's
  -- buffer); fd = false the socket transport
  local CHOSEN = { [false] = "lunatls.transport.socket", [true] = "lunatls.transport.fd",
                   adopt = "lunatls.transport.fd" }
  for _, fd in ipairs { "default", false, true, "adopt" } do
    it("use the transport option fd chooses: " .. tostring(fd), function()
      local listener, port = listen()
      finally(function() listener:close() end)
      local opts = { timeout = 10 }
      if fd ~= "default" then opts.fd = fd end
      local server, client
      run(function()
        server = assert(tls.accept(listener, server_ctx, opts))
        assert.equal("ping", server:receive("*l"))
        server:close()
      end, function()
        client = assert(tls.connect("127.0.0.1", port, client_ctx, opts))
        assert(client:send("ping\n"))
        client:close()
      end)
      local want = CHOSEN[fd == "default" or fd]
      assert.equal(want, getmetatable(server.transport).__name)
      assert.equal(want, getmetatable(client.transport).__name)
    end)
  end

  it("to a closed port gives nil, message, 'syscall'", function()
    local listener, port = listen()
    listener:close()
    local result
    run(function() result = { tls.connect("127.0.0.1", port, client_ctx, { timeout = 5 }) } end)
    assert.is_nil(result[1])
    assert.matches("connection refused", result[2])
    assert.equal("syscall", result[3])
  end)

  -- libuv reports a refused connect as a poll error (UV_EBADF), and luv
  -- printed "EBADF: bad file descriptor" to stderr for it: a local refusal
  -- is known before any wait, so the wait is not made
  it("to a closed port, on the luv backend: nothing printed", function()
    local listener, port = listen()
    listener:close()
    local output = process.run_script(([[
      package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
      package.cpath = "./build/?.so;" .. package.cpath
      local tls = require "lunatls"
      local ctx = tls.new_context { mode = "client", cafile = "spec/fixtures/ca.pem" }
      local sched = require("lunatls.scheduler").new { backend = "luv" }
      sched:spawn(function() print(select(3, tls.connect("127.0.0.1", %d, ctx, { timeout = 5 }))) end)
      assert(sched:run())
    ]]):format(port), "timeout 30 lua5.4 %s 2>&1")
    assert.equal("syscall\n", output)
  end)
end)

describe("socket transport, attached", function()
  it("gives the connection the socket's descriptor, unless LuaSocket holds bytes it read ahead, "
     .. "the socket is closed, or an object wraps it", function()
    local client, server = starttls_read_ahead()
    local transport = socket_transport.new(server)
    assert.is_nil(transport:attach()) -- the ClientHello's first bytes must go through the pair
    assert.equal("\22\3\1", server:receive(3))
    assert.same({ "fd", server }, { transport:attach() })
    local stream = tls.wrap(transport, server_ctx)
    assert.is_nil(stream.conn:bio()) -- OpenSSL on the descriptor: no pair
    local wrapper = socket_transport.new { settimeout = function() end, setoption = function() end }
    assert.is_nil(wrapper:attach())
    local closing = socket_transport.new(client)
    client:close()
    assert.is_nil(closing:attach())
  end)

  it("a socket closed under the stream fails its next calls with code eof; the number the "
     .. "system gives the next socket is never written", function()
    local listener, port = listen()
    finally(function() listener:close() end)
    local other_listener, other_port = listen()
    finally(function() other_listener:close() end)
    local sent, received, reused
    run(function()
      local server = tls.wrap(socket_transport.new(accept_raw(listener)), server_ctx, { timeout = 10 })
      assert(server:handshake())
      server:receive(1) -- the client's socket goes away
      server:close()
    end, function()
      local tcp = assert(socket_transport.connect("127.0.0.1", port)).socket
      local client = tls.wrap(socket_transport.new(tcp), client_ctx, { server_name = "localhost", timeout = 10 })
      assert(client:handshake())
      local fd = tcp:getfd()
      finally(link.take_numbers_below(fd))
      tcp:close() -- under the stream
      local other = assert(socket.connect("127.0.0.1", other_port))
      finally(function() other:close() end)
      reused = other:getfd() == fd
      sent = { client:send("secret") }
      received = { client:receive(1) }
      client:close()
      local peer = assert(other_listener:accept())
      finally(function() peer:close() end)
      peer:settimeout(0.2)
      local data, err = peer:receive(1)
      assert.same({ nil, "timeout" }, { data, err }) -- nothing reached the stranger
    end)
    assert.is_true(reused)
    local closed = { nil, "the socket was closed under the connection", "eof" }
    assert.same(closed, { sent[1], sent[2], sent[3] })
    assert.same(closed, { received[1], received[2], received[3] })
  end)
end)
