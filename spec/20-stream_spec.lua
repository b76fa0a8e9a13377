-- The stream driver over in-memory pipes: receive patterns, partial data,
-- backpressure and OpenSSL's write-retry rule, full duplex from two
-- coroutines, closes, dead streams, TLS inside TLS, and plain coroutines
-- without the scheduler.

local tls = require "lunatls"
local scheduler = require "lunatls.scheduler"
local socket = require "socket"
local memory = require "lunatls.transport.memory"

local F = "spec/fixtures/"
local server_ctx = assert(tls.new_context {
  mode = "server", certificate = F .. "server.pem", key = F .. "server.key", alpn = { "h2", "echo" },
})
local client_ctx = assert(tls.new_context { mode = "client", cafile = F .. "ca.pem", alpn = { "echo" } })

-- Seconds per call: 10, or 120 where memcheck or the gcstress collector
-- slows everything down 30 to 50 times (the one-byte pipe tests then need
-- it: 20,000 bytes one at a time took over 30 s under gcstress). Bounds
-- only: a test that passes takes what it takes.
local sanitizer = os.getenv("LUNATLS_SANITIZER")
local SLOW = sanitizer == "valgrind" or sanitizer == "gcstress"
local CALL_TIMEOUT = SLOW and 120 or 10

--- A connected client and server stream over a memory pipe.
local function pair(pipe_opts, client_opts, server_opts)
  local a, b = memory.pipe(pipe_opts)
  local copts = { server_name = "localhost", timeout = CALL_TIMEOUT }
  for k, v in pairs(client_opts or {}) do copts[k] = v end
  local sopts = { timeout = CALL_TIMEOUT }
  for k, v in pairs(server_opts or {}) do sopts[k] = v end
  return tls.wrap(a, client_ctx, copts), tls.wrap(b, server_ctx, sopts), a, b
end

--- Runs the functions as tasks of one scheduler; a task's error fails the test.
local function run(...)
  local sched = scheduler.new()
  for _, fn in ipairs { ... } do sched:spawn(fn, sched) end
  assert(sched:run(SLOW and 600 or 60), "the coroutines did not finish in time")
end

--- pair(...), handshaken.
local function handshaken(...)
  local client, server, client_end, server_end = pair(...)
  run(function() assert(client:handshake()) end, function() assert(server:handshake()) end)
  return client, server, client_end, server_end
end

--- Pseudo-random bytes (fixed seed).
local function noise(n, seed)
  local state, out = seed or 7, {}
  for i = 1, n do
    state = (state * 1103515245 + 12345) % 2147483648
    out[i] = string.char(state >> 16 & 255)
  end
  return table.concat(out)
end

describe("stream over a memory pipe", function()
  it("handshakes and exposes the connection's accessors", function()
    local client, server = pair()
    local seen = {}
    run(function()
      assert.is_true(client:handshake())
      assert.is_true(client:handshake()) -- again: nothing to do
      seen.version, seen.alpn = client:version(), client:alpn_selected()
      seen.subject = client:peer_certificate():subject()
      seen.key = client:export_keying_material("EXPORTER-test", 16)
      seen.reused = client:session_reused()
    end, function()
      assert.is_true(server:handshake())
      seen.sni = server:server_name()
      seen.server_key = server:export_keying_material("EXPORTER-test", 16)
    end)
    assert.equal("TLSv1.3", seen.version)
    assert.equal("echo", seen.alpn)
    assert.equal("CN=localhost,O=lunatls tests", seen.subject)
    assert.equal("localhost", seen.sni)
    assert.equal(seen.key, seen.server_key)
    assert.is_false(seen.reused)
  end)

  it("receives lines, counts, everything, with a prefix, like LuaSocket", function()
    local client, server = pair()
    local got = {}
    run(function()
      assert.equal(37, client:send("line one\r\nline two\nwith\rcr\nrest of it"))
      assert(client:shutdown())
    end, function()
      got[1] = server:receive()          -- "*l" by default
      got[2] = server:receive("*L")
      got[3] = server:receive("l")
      got[4] = server:receive(4)
      got[5] = server:receive(0)
      got[6] = server:receive(3, ">>")
      got[7] = server:receive("*a")
      got[8] = server:receive("a")       -- after close_notify: nothing more
    end)
    assert.same({ "line one", "line two\n", "withcr", "rest", "", ">> of", " it", "" }, got)
  end)

  it("send(data, i, j) sends a slice and returns j", function()
    local client, server = pair()
    local got, result
    run(function()
      result = client:send("0123456789", 3, -3)
    end, function()
      got = server:receive(6)
    end)
    assert.equal(8, result)
    assert.equal("234567", got)
  end)

  it("receive_some gives what has arrived, at most max, buffered bytes first", function()
    local client, server = pair()
    local got = {}
    run(function()
      assert(client:send("abcdef\n"))
    end, function()
      got[1] = server:receive(2)
      got[2] = server:receive_some(3)
      got[3] = server:receive_some()
    end)
    assert.same({ "ab", "cde", "f\n" }, got)
  end)

  it("carries every byte when the pipe moves one byte at a time both ways", function()
    local client, server = pair { chunk = 1 }
    local data, echoed = noise(20000, 1), nil
    run(function()
      assert(client:send(data))
      echoed = client:receive(#data)
    end, function()
      assert(server:send(assert(server:receive(#data))))
    end)
    assert.is_true(echoed == data)
  end)

  it("honours OpenSSL's write-retry rule: BIO pairs smaller than a record, a 7-byte pipe, "
     .. "both directions at once", function()
    -- records (16 KiB) do not fit the 512-byte BIO pairs: every write stops
    -- short with a record half out, and must be retried with the same bytes
    local client, server = pair({ capacity = 7 }, { buffer_size = 512 }, { buffer_size = 512 })
    local up, down = noise(100000, 2), noise(100000, 3)
    local got_up, got_down
    run(function(sched)
      sched:spawn(function() assert.equal(#up, client:send(up)) end)
      got_down = client:receive(#down)
    end, function(sched)
      sched:spawn(function() assert.equal(#down, server:send(down)) end)
      got_up = server:receive(#up)
    end)
    assert.is_true(got_up == up)
    assert.is_true(got_down == down)
  end)

  -- A send of one record or less takes a short path (stream.lua send_now)
  -- that falls back to the general one when the write stops short or the
  -- transport takes part of the bytes: the same pressure, with such sends.
  it("sends of one record or less keep every byte under the same pressure, both ways at once", function()
    local client, server = pair({ capacity = 7 }, { buffer_size = 512 }, { buffer_size = 512 })
    local sizes = { 1, 100, 16383, 16384, 511, 513, 4096 }
    local function messages(seed)
      local list = {}
      for k, size in ipairs(sizes) do list[k] = noise(size, seed + k) end
      return list
    end
    local up, down = messages(10), messages(20)
    local function send_all(stream, list)
      for _, m in ipairs(list) do assert.equal(#m, stream:send(m)) end
    end
    local got_up, got_down
    run(function(sched)
      sched:spawn(function() send_all(client, up) end)
      got_down = client:receive(#table.concat(down))
    end, function(sched)
      sched:spawn(function() send_all(server, down) end)
      got_up = server:receive(#table.concat(up))
    end)
    assert.is_true(got_up == table.concat(up))
    assert.is_true(got_down == table.concat(down))
  end)

  it("reads and writes from two coroutines at once (full duplex), through a small pipe", function()
    -- sending 1 MiB before reading would deadlock against an echo through a
    -- 4 KiB pipe; a reader coroutine beside the writer keeps it flowing
    local client, server = pair { capacity = 4096 }
    local data, back = noise(1024 * 1024, 4), nil
    run(function(sched)
      sched:spawn(function() assert.equal(#data, client:send(data)) end)
      back = client:receive(#data)
    end, function()
      while true do
        local chunk = server:receive_some()
        if not chunk then break end
        assert(server:send(chunk))
      end
    end, function(sched)
      -- the server's loop ends at the client's close_notify
      while not back do sched:sleep(0.01) end
      assert(client:shutdown())
    end)
    assert.is_true(back == data)
  end)

  it("works over a transport whose send and receive yield (as copas's do), full duplex", function()
    -- each send and receive lets the other coroutines run before it acts:
    -- the stream must never run two sends (or two receives) at once
    local function yielding(inner)
      return {
        send = function(_, data) coroutine.yield() return inner:send(data) end,
        receive = function(_, max) coroutine.yield() return inner:receive(max) end,
        wait = function(_, what, deadline) return inner:wait(what, deadline) end,
        close = function() inner:close() end,
      }
    end
    local a, b = memory.pipe { capacity = 3000 }
    local client = tls.wrap(yielding(a), client_ctx, { server_name = "localhost", timeout = 10 })
    local server = tls.wrap(yielding(b), server_ctx, { timeout = 10 })
    local data, back = noise(300000, 6), nil
    run(function(sched)
      sched:spawn(function() assert.equal(#data, client:send(data)) end)
      back = client:receive(#data)
    end, function()
      local echoed = 0
      while echoed < #data do
        local chunk = assert(server:receive_some())
        assert(server:send(chunk))
        echoed = echoed + #chunk
      end
    end)
    assert.is_true(back == data)
  end)

  it("coroutines sending at once take turns: every message arrives whole", function()
    local client, server = pair { capacity = 5000 }
    local messages, got = {}, nil
    for k = 1, 6 do messages[k] = ("[%d:%s]"):format(k, ("x"):rep(30000 + k)) end
    run(function(sched)
      for k = 1, 6 do
        sched:spawn(function() assert(client:send(messages[k])) end)
      end
    end, function()
      got = server:receive(#table.concat(messages))
    end)
    -- in some order, but each one whole
    local seen = {}
    for k, body in got:gmatch("%[(%d):(x+)%]") do seen[tonumber(k)] = #body end
    for k = 1, 6 do assert.equal(30000 + k, seen[k]) end
  end)

  it("a send that times out with a record half written resumes exactly where it stopped", function()
    local client, server = pair({ capacity = 1000 }, { buffer_size = 512, timeout = 0.2 }, { buffer_size = 512 })
    local data = noise(300000, 5)
    local first, received
    run(function() assert(client:handshake()) end, function() assert(server:handshake()) end)
    run(function() first = { client:send(data) } end) -- nobody reads
    assert.same({ nil, "timeout", "timeout" }, { first[1], first[2], first[3] })
    local last = first[4]
    assert.is_true(last > 0 and last < #data, "last " .. tostring(last))
    assert.is_not_nil(client.retry, "the timeout did not leave a write half done")
    client:settimeout(10)
    run(function()
      assert.equal(#data, client:send(data, last + 1))
    end, function()
      received = server:receive(#data)
    end)
    assert.is_true(received == data)
  end)

  it("never loses partial data: a line cut by a vanished peer comes back as partial", function()
    local client, server, _, server_end = pair()
    local result = {}
    run(function()
      assert(server:send("partial li"))
      server_end:close() -- no close_notify
    end, function()
      result.first = { client:receive("*l") }
      result.again = { client:receive("*l") }
    end)
    assert.is_nil(result.first[1])
    assert.equal("eof", result.first[3])
    assert.equal("partial li", result.first[4])
    -- dead: the same failure again, nothing more
    assert.same({ nil, result.first[2], "eof", "" }, result.again)
    assert.equal("eof", select(2, client:failure()))
  end)

  it("a close_notify in the middle of a line gives nil, 'closed', 'closed', partial", function()
    local client, server = pair()
    local result
    run(function()
      assert(server:send("abc"))
      assert(server:shutdown())
    end, function()
      result = { client:receive("*l") }
    end)
    assert.same({ nil, "closed", "closed", "abc" }, result)
  end)

  it("shutdown(true) waits for the peer's close_notify and keeps data that came first", function()
    local client, server = pair()
    local done, late
    run(function()
      assert(client:handshake())
      done = client:shutdown(true)
      late = client:receive("*a")
    end, function()
      assert(server:handshake())
      assert(server:send("late data"))
      assert.same({ nil, "closed", "closed", "" }, { server:receive(1) })
      assert(server:shutdown())
    end)
    assert.is_true(done)
    assert.equal("late data", late)
  end)

  it("a certificate that does not verify: nil, message, 'verify', and the stream stays dead", function()
    local a, b = memory.pipe()
    local ctx = assert(tls.new_context { mode = "client", cafile = F .. "otherca.pem" })
    local client = tls.wrap(a, ctx, { server_name = "localhost", timeout = 5 })
    local server = tls.wrap(b, server_ctx, { timeout = 5 })
    local result, server_result
    run(function()
      result = { client:handshake() }
      result.again = { client:receive(1) }
    end, function()
      server_result = { server:handshake() }
    end)
    assert.is_nil(result[1])
    assert.equal("verify", result[3])
    assert.matches("certificate verify failed", result[2])
    assert.same({ nil, result[2], "verify", "" }, result.again)
    assert.is_nil(server_result[1])
    assert.equal("protocol", server_result[3]) -- the client's alert
  end)

  it("raises on a closed stream, closes idempotently, and refuses unknown options", function()
    local client = pair()
    assert.is_true(client:close())
    assert.is_true(client:close())
    assert.has_error(function() client:send("x") end, "attempt to use a closed lunatls.Stream")
    assert.has_error(function() client:receive() end, "attempt to use a closed lunatls.Stream")
    assert.matches("closed", tostring(client))
    local a = memory.pipe()
    assert.has_error(function() tls.wrap(a, server_ctx, { timout = 1 }) end,
      "wrap: unknown option 'timout'")
  end)

  it("close() never raises, even where close_notify cannot go out", function()
    local client, server, client_end = pair { capacity = 4096 }
    run(function() assert(client:handshake()) end, function() assert(server:handshake()) end)
    client_end:send(("x"):rep(4096))
    assert.equal(0, client_end:send("x")) -- the pipe is full
    -- outside any coroutine: waiting on the pipe would raise, close() must not
    assert.is_true(client:close())
    assert.has_error(function() client:handshake() end, "attempt to use a closed lunatls.Stream")
  end)

  it("close() sends close_notify: the peer reads 'closed', not 'eof'", function()
    local client, server = pair()
    local result
    run(function()
      assert(client:handshake())
      client:close()
    end, function()
      result = { server:receive("*a") }
    end)
    assert.same({ "" }, result)
  end)

  it("carries TLS inside TLS: an inner connection relayed through an outer stream", function()
    local outer_client, outer_server = pair()
    local inner_a, inner_b = memory.pipe() -- inner client <-> relay (client side)
    local inner_c, inner_d = memory.pipe() -- relay (server side) <-> inner server
    local inner_client = tls.wrap(inner_a, client_ctx, { server_name = "localhost", timeout = 10 })
    local inner_server = tls.wrap(inner_d, server_ctx, { timeout = 10 })

    -- Moves bytes from a pipe end into a stream until the pipe closes.
    local function pipe_to_stream(pipe_end, stream)
      while true do
        local data, status = pipe_end:receive(16384)
        if data then
          if not stream:send(data) then return end
        elseif status == "want_read" then
          pipe_end:wait("read")
        else
          return
        end
      end
    end
    -- Moves bytes from a stream into a pipe end until the stream ends.
    local function stream_to_pipe(stream, pipe_end)
      while true do
        local data = stream:receive_some()
        if not data then return end
        local pos = 1
        while pos <= #data do
          local n = pipe_end:send(data:sub(pos))
          if not n then return end
          pos = pos + n
          if pos <= #data then pipe_end:wait("write") end
        end
      end
    end

    local seen = {}
    local finished = 0
    local function finish()
      finished = finished + 1
      if finished == 2 then -- both inner ends are done: tear the relay down
        outer_client:close()
        outer_server:close()
        inner_b:close()
        inner_c:close()
      end
    end
    run(function() pipe_to_stream(inner_b, outer_client) end,
        function() stream_to_pipe(outer_client, inner_b) end,
        function() pipe_to_stream(inner_c, outer_server) end,
        function() stream_to_pipe(outer_server, inner_c) end,
        function()
          assert(inner_client:handshake())
          seen.version = inner_client:version()
          assert(inner_client:send("inner hello\n"))
          seen.reply = inner_client:receive()
          assert(inner_client:shutdown(true))
          finish()
        end,
        function()
          local line = assert(inner_server:receive())
          assert(inner_server:send("inner echo: " .. line .. "\n"))
          assert.same({ nil, "closed", "closed", "" }, { inner_server:receive() })
          assert(inner_server:shutdown())
          finish()
        end)
    assert.equal("TLSv1.3", seen.version)
    assert.equal("inner echo: inner hello", seen.reply)
  end)

  it("runs in plain coroutines resumed by hand, without the scheduler", function()
    local client, server = pair()
    local reply
    local client_co = coroutine.create(function()
      assert(client:send("ping\n"))
      reply = client:receive()
    end)
    local server_co = coroutine.create(function()
      local line = assert(server:receive())
      assert(server:send(line .. " pong\n"))
    end)
    for _ = 1, 100 do
      for _, co in ipairs { client_co, server_co } do
        if coroutine.status(co) ~= "dead" then
          local ok, what = coroutine.resume(co)
          assert(ok, what)
          if coroutine.status(co) ~= "dead" then assert.equal("event", what) end
        end
      end
      if coroutine.status(client_co) == "dead" and coroutine.status(server_co) == "dead" then break end
    end
    assert.equal("ping pong", reply)
  end)

  it("outside any coroutine, waiting on a memory pipe raises instead of hanging", function()
    local client = pair()
    assert.has_error(function() client:handshake() end)
  end)

  it("the alert a failed read writes reaches the peer at once (a tampered record)", function()
    -- Driver:read pushes what a read wrote before it returns the failure:
    -- the client learns why, instead of waiting for a reply that never comes
    local client, server, client_end = handshaken({}, { timeout = 2 })
    local failed, message, code
    run(function()
      -- an application-data record no key opens, as from the client
      assert.equal(21, client_end:send("\23\3\3\0\16" .. ("\0"):rep(16)))
      local data
      data, failed = server:receive(1)
      assert.is_nil(data)
    end, function()
      local _
      _, message, code = client:receive(1)
    end)
    assert.equal("protocol", server:failure() and select(2, server:failure()))
    assert.equal("protocol", code, message)
    assert.matches("alert", message)
    assert.is_string(failed)
  end)
end)

describe("stream ownership", function()
  it("a task that raises aborts the stream it used, whichever task used it before", function()
    -- streams register with the running task once per task in a row
    -- (stream.lua, own): each new task must still get the stream
    local client, server = pair()
    run(function() assert(client:handshake()) end, function() assert(server:handshake()) end)
    local failures = {}
    local sched = scheduler.new { on_error = function(err) failures[#failures + 1] = err end }
    sched:spawn(function() assert(client:send("a")) end)
    assert(sched:run(10))
    sched:spawn(function()
      assert(client:send("b"))
      error("boom", 0)
    end)
    local ok, err = sched:run(10)
    assert.is_nil(ok)
    assert.matches("^boom", err) -- with the task's traceback
    assert.equal(1, #failures)
    assert.has_error(function() client:send("c") end, "attempt to use a closed lunatls.Stream")
  end)
end)

describe("stream reads", function()
  -- The stream moves the bytes of a pipe made with `chunk` (Driver:read
  -- moves them into an empty ring before reading: when that move fails, the
  -- plaintext already here still comes first); OpenSSL reads an attached
  -- pipe itself, and meets its end.
  for _, case in ipairs {
    { "moved by the stream", { chunk = 1024 }, "the pipe is closed" },
    { "attached", nil, "unexpected eof" },
  } do
    local name, pipe_opts, message = case[1], case[2], case[3]
    it("give what OpenSSL holds decrypted before a failure of the transport (" .. name .. ")", function()
      local client, server, _, server_end = pair(pipe_opts)
      assert.equal(pipe_opts == nil, not server.driver.net)
      run(function() assert(client:handshake()) end, function() assert(server:handshake()) end)
      local got = {}
      run(function()
        assert(client:send(("y"):rep(100)))
        got[1] = server:receive(10) -- one record read: 90 bytes stay inside OpenSSL
        server_end:close()          -- this end's transport fails from now on
        got[2] = server:receive(90)
        got[3] = { server:receive(1) }
      end)
      assert.equal(("y"):rep(10), got[1])
      assert.equal(("y"):rep(90), got[2])
      assert.is_nil(got[3][1])
      assert.matches(message, got[3][2])
      assert.equal("eof", got[3][3])
    end)
  end
end)

describe("lunatls.transport.memory", function()
  it("refuses a capacity or chunk it cannot honour", function()
    assert.has_error(function() memory.pipe { capacity = 0 } end,
      "pipe: capacity must be an integer from 1 to 64 MiB")
    assert.has_error(function() memory.pipe { capacity = 65 * 1024 * 1024 } end,
      "pipe: capacity must be an integer from 1 to 64 MiB")
    assert.has_error(function() memory.pipe { capacity = 1.5 } end,
      "pipe: capacity must be an integer from 1 to 64 MiB")
    assert.has_error(function() memory.pipe { chunk = 0 } end, "pipe: chunk must be a positive integer")
  end)

  it("moves a network end's bytes ring to ring, within capacity and chunk, and says closed", function()
    local a, b = memory.pipe { capacity = 10, chunk = 4 }
    local x1, x2 = tls.new_bio_pair()
    local y1, y2 = tls.new_bio_pair()
    assert.equal(12, x1:write("hello, world"))
    assert.equal(4, a:send_from(x2)) -- chunk
    assert.equal(4, a:send_from(x2))
    assert.equal(2, a:send_from(x2)) -- capacity
    assert.equal(0, a:send_from(x2))
    assert.equal(2, x2:pending())    -- what did not fit stays in the ring
    assert.equal(10, b:pending())
    assert.equal(4, b:receive_into(y1, 100))
    assert.equal(2, b:receive_into(y1, 2))
    assert.equal("hello,", y2:read())
    assert.equal(2, a:send_from(x2))
    a:shutdown_write()
    assert.equal(" wor", b:receive(100))
    assert.equal(2, b:receive_into(y1, 100))
    assert.same({ nil, "closed" }, { b:receive_into(y1, 100) })
    assert.equal("ld", y2:read())
    b:close()
    assert.same({ nil, "send: the pipe is closed", "eof" }, { a:send_from(x2) })
  end)

  it("gives a stream's connection its end (attach) unless made with chunk or under 16 KiB", function()
    for _, case in ipairs {
      { nil, true }, { { capacity = 16 * 1024 }, true },
      { { capacity = 16 * 1024 - 1 }, false }, { { chunk = 4096 }, false },
    } do
      local pipe_opts, attached = case[1], case[2]
      local client, server = pair(pipe_opts)
      -- attached: no network end, OpenSSL reads and writes the pipe itself
      assert.equal(attached, not client.driver.net)
      assert.equal(attached, not server.driver.net)
      local got
      run(function() assert(client:send("hello\n")) end, function() got = server:receive() end)
      assert.equal("hello", got)
    end
  end)

  it("attached: every call of a connection wakes the task waiting on the other end", function()
    -- 16 KiB each way, 256 KiB sent: the writer keeps waiting for the room
    -- its peer's reads make, the reader for the bytes the writer's calls
    -- bring; the handshake and the answer wait on each other too. A call
    -- that did not wake the other end leaves it waiting: a timeout.
    local client, server = pair { capacity = 16 * 1024 }
    local data = ("w"):rep(256 * 1024)
    local got, answer = {}, nil
    run(function()
      for i = 1, #data, 1024 do assert(client:send(data, i, i + 1023)) end -- send's short path
      assert(client:send(data))                                           -- its general path
      answer = client:receive(5)
    end, function()
      for i = 1, 2 * #data / 1024 do got[i] = server:receive(1024) end
      assert(server:send("done!"))
    end)
    assert.is_true(table.concat(got) == data .. data)
    assert.equal("done!", answer)
  end)

  -- A task whose last call of its connection moved bytes, then waits on
  -- something else: only that call can wake the other end.
  it("attached: a send, then a wait elsewhere, wakes the reader on the other end", function()
    local client, server = handshaken { capacity = 16 * 1024 }
    local got_it, waited = {}, nil
    run(function()
      scheduler.pause() -- the server waits to read first
      assert(client:send("ping\n")) -- send's short path: one call, the record in the pipe
      waited = { scheduler.wait_event(got_it, socket.gettime() + 2) }
    end, function()
      assert.equal("ping", server:receive())
      scheduler.notify(got_it)
    end)
    assert.same({ true }, waited)
  end)

  -- The client's first call empties the pipe the server waits to write into;
  -- it returns how many of the messages it took.
  local message = ("m"):rep(1024)
  for _, case in ipairs {
    { "a receive", function(client) -- receive's short path: one read takes what the pipe holds
      assert.equal(message, client:receive(1024))
      return 1
    end },
    { "a dirty() that reads what the pipe holds", function(client)
      -- dirty() reads a record to tell a whole one from part of one (read_held)
      assert.is_true(client:dirty())
      return 0
    end },
  } do
    local name, first_call = case[1], case[2]
    it("attached: " .. name .. ", then a wait elsewhere, wakes the writer on the other end", function()
      local client, server = handshaken { capacity = 16 * 1024 }
      local sent_all, waited = {}, nil
      run(function()
        -- 15 and a half fill the pipe: the server waits for room; the rest
        -- fit once the client has read
        for _ = 1, 20 do assert(server:send(message)) end
        scheduler.notify(sent_all)
      end, function()
        scheduler.pause() -- the server fills the pipe first
        local taken = first_call(client)
        waited = { scheduler.wait_event(sent_all, socket.gettime() + 2) }
        for _ = taken + 1, 20 do assert.equal(message, client:receive(1024)) end
      end)
      assert.same({ true }, waited)
    end)
  end

  it("attached: once the other end is closed, a send fails with code eof", function()
    local client, _, _, server_end = handshaken()
    server_end:close()
    local result
    run(function() result = { client:send("too late") } end)
    assert.same({ nil, "write: the transport is closed: its BIO pair was shut down", "eof", 0 }, result)
  end)

  it("wakes a task waiting to read when bytes come ring to ring", function()
    local a, b = memory.pipe()
    local x1, x2 = tls.new_bio_pair()
    local y1, y2 = tls.new_bio_pair()
    local got
    run(function()
      assert.is_true(b:wait("read"))
      assert.equal(3, b:receive_into(y1, 100))
      got = y2:read()
    end, function()
      x1:write("abc")
      assert.equal(3, a:send_from(x2))
    end)
    assert.equal("abc", got)
  end)
end)
