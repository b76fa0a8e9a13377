-- Hostile peers against a line-echo TLS server (spec/helpers/hold_server.lua,
-- its own process) on each loop: the bundled scheduler, cqueues and luv.
-- While 2,000 idle TCP connections, 500 stalled ClientHellos, 200 garbage
-- clients, one 64 MB line and a client whose servername callback raises
-- hit it, a well-behaved client keeps getting answers within 1 s (on one
-- connection, and on a new connection every 0.25 s); the server never
-- dies; once the attackers are gone its descriptors come back to their
-- baseline, and so does its RSS once it calls tls.release_memory() (which
-- it does every half second, with its collection), three rounds in a row.
-- About 13 s per loop.

local tls = require "lunatls"
local socket = require "socket"
local scheduler = require "lunatls.scheduler"
local process = require "helpers.process"

local F = "spec/fixtures/"
local gettime = socket.gettime
local client_ctx = assert(tls.new_context { mode = "client", cafile = F .. "ca.pem" })

local IDLE, STALLED, GARBAGE = 2000, 500, 200
local ATTACK_SECONDS = 2
local ROUNDS = 3
-- KiB above the baseline the server's RSS may stay after the attack, and
-- may grow from the first round to the last (why: the comment above the
-- checks).
local RSS_SLACK = { scheduler = 6 * 1024, luv = 6 * 1024, cqueues = 16 * 1024 }
local RSS_GROWTH = 1024

-- The server's open descriptors and resident memory (KiB).
local function usage(pid)
  return process.open_descriptors(pid), process.rss_kib(pid)
end

-- The first bytes of a real ClientHello (a stalled one never finishes).
local function client_hello_head()
  local conn = client_ctx:new_conn { server_name = "localhost" }
  conn:do_handshake()
  local hello = conn:bio():read()
  conn:close()
  return hello:sub(1, #hello // 2)
end

-- Connects without blocking the clients' scheduler: a blocking connect holds
-- up every task of this process, the good client's timed pings too, and
-- when the server's accept queue is full the kernel retries a dropped SYN
-- only after 1 s (the likely cause of a 1.065 s "ping" that failed CI once).
local function connect_raw(port)
  local transport = assert(require("lunatls.transport.socket").connect("127.0.0.1", port, gettime() + 5))
  return transport.socket
end

-- Opens `count` raw connections, a batch at a time, letting the others run.
local function open_many(port, count, first_bytes, list)
  for i = 1, count do
    local sock = connect_raw(port)
    if first_bytes then sock:send(first_bytes) end
    sock:settimeout(0)
    list[#list + 1] = sock
    if i % 20 == 0 then scheduler.pause() end
  end
end

-- A connection that echoes: the latency of one line, or nil, why.
local function ask(stream, text)
  local started = gettime()
  local ok, message = stream:send(text .. "\n")
  if not ok then return nil, message end
  local line, why = stream:receive()
  if line ~= text then return nil, "echo: " .. tostring(why) end
  return gettime() - started
end

local function good_client(port, state)
  local stream = assert(tls.connect("127.0.0.1", port, client_ctx,
    { server_name = "localhost", timeout = 5 }))
  local n = 0
  while not state.done do
    n = n + 1
    local seconds, why = ask(stream, "ping " .. n)
    if not seconds then state.failures[#state.failures + 1] = "ping: " .. tostring(why) break end
    if seconds > state.worst then state.worst = seconds end
    state.answers = state.answers + 1
    scheduler.sleep(0.05)
  end
  stream:close()
end

local function newcomer(port, state)
  while not state.done do
    local started = gettime()
    local stream, why = tls.connect("127.0.0.1", port, client_ctx,
      { server_name = "localhost", timeout = 5 })
    local seconds = stream and ask(stream, "hello")
    if not seconds then
      state.failures[#state.failures + 1] = "newcomer: " .. tostring(why)
    else
      local total = gettime() - started
      if total > state.worst_new then state.worst_new = total end
      state.newcomers = state.newcomers + 1
    end
    if stream then stream:close() end
    scheduler.sleep(0.25)
  end
end

local function long_line(port, state)
  local stream = assert(tls.connect("127.0.0.1", port, client_ctx,
    { server_name = "localhost", timeout = 10 }))
  local chunk, sent = ("a"):rep(1024 * 1024), 0
  for _ = 1, 64 do
    if not stream:send(chunk) then break end
    sent = sent + #chunk
  end
  state.line_sent = sent
  stream:close()
end

local function bad_callback(port, state)
  local stream, message = tls.connect("127.0.0.1", port, client_ctx,
    { server_name = "bad.example", timeout = 5 })
  state.bad = { stream ~= nil, message }
  if stream then stream:close() end
end

local function attack(port, state)
  local hello = client_hello_head()
  local garbage = {}
  for i = 1, 512 do garbage[i] = string.char((i * 37 + 11) % 256) end
  garbage = table.concat(garbage)
  open_many(port, IDLE, nil, state.sockets)
  open_many(port, STALLED, hello, state.sockets)
  open_many(port, GARBAGE, garbage, state.sockets)
  scheduler.sleep(ATTACK_SECONDS)
  state.done = true
end

-- Under a sanitizer (make asan, valgrind, gcstress) the clients in this
-- process run 3 to 50 times slower: latencies measured here would say
-- nothing about the server. The spec skips itself there, explicitly.
local describe_unless_sanitized = os.getenv("LUNATLS_SANITIZER") and pending or describe

for _, loop in ipairs { "scheduler", "cqueues", "luv" } do
  describe_unless_sanitized("hostile peers against the " .. loop .. " server", function()
    it("a good client keeps its answers within 1 s; descriptors and RSS come back", function()
      local server = process.spawn("exec lua5.4 spec/helpers/hold_server.lua " .. loop)
      finally(function() server:kill() end)
      assert(server:wait_output("ready", 10), server:output())
      local port = tonumber(server:output():match("ready (%d+)"))
      -- baseline: after a first client came and went
      local warm = assert(tls.connect("127.0.0.1", port, client_ctx, { server_name = "localhost" }))
      assert(ask(warm, "warm"))
      warm:close()
      socket.sleep(0.3)
      local fds0, rss0 = usage(server.pid)

      local rounds = {}
      for round = 1, ROUNDS do
        local state = { sockets = {}, failures = {}, worst = 0, worst_new = 0, answers = 0,
                        newcomers = 0, done = false }
        local sched = scheduler.new()
        sched:spawn(good_client, port, state)
        sched:spawn(newcomer, port, state)
        sched:spawn(attack, port, state)
        sched:spawn(long_line, port, state)
        sched:spawn(bad_callback, port, state)
        local ok, err = sched:run(40)
        state.fds_attack, state.rss_attack = usage(server.pid)
        for _, sock in ipairs(state.sockets) do sock:close() end
        state.sockets = nil
        assert(ok, "the clients did not finish: " .. tostring(err))
        -- the attackers are gone: the server lets go of everything (it
        -- collects garbage every half second)
        local deadline = gettime() + 10
        repeat
          socket.sleep(0.2)
          state.fds, state.rss = usage(server.pid)
        until (state.fds <= fds0 + 2 and gettime() > deadline - 9) or gettime() > deadline
        socket.sleep(0.6)
        state.fds, state.rss = usage(server.pid)
        assert(server:alive(), "the server died:\n" .. server:output())
        print(("\n  %s round %d: %d pings (worst %.3f s), %d newcomers (worst %.3f s); fds %d -> %d -> %d,"
               .. " RSS %d -> %d -> %d KiB"):format(loop, round, state.answers, state.worst,
               state.newcomers, state.worst_new, fds0, state.fds_attack, state.fds, rss0,
               state.rss_attack, state.rss))
        rounds[round] = state
      end
      for _, state in ipairs(rounds) do
        assert.same({}, state.failures)
        assert.is_true(state.answers >= 10, "pings answered: " .. state.answers)
        assert.is_true(state.newcomers >= 3, "newcomers served: " .. state.newcomers)
        assert.is_true(state.worst < 1, "a ping took " .. state.worst .. " s")
        assert.is_true(state.worst_new < 1, "a newcomer took " .. state.worst_new .. " s")
        assert.is_true(state.fds_attack >= fds0 + IDLE, "the attack did not reach the server")
        assert.is_true(state.fds <= fds0 + 2, ("descriptors: %d before, %d after"):format(fds0, state.fds))
        assert.is_true(state.line_sent < 64 * 1024 * 1024, "the 64 MB line was taken whole")
        assert.same({ false }, { state.bad[1] })
      end
      -- Memory: once the attackers are gone and the server has called
      -- tls.release_memory(), its RSS is back near the baseline (without
      -- release_memory it stays where the attack took it, ~150 MiB:
      -- docs/coroutines.md). Near: the allocations still live after the
      -- attack (1.6 MB on the scheduler's server) pin the pages they landed
      -- on, 1-1.5 MiB above the baseline on the scheduler and luv. cqueues
      -- keeps the event, descriptor and wake-up records a burst made in free
      -- lists for the life of the queue (2.1 MB live after the attack,
      -- allocated among the connections' memory): 1.6 to 6.3 MiB above it,
      -- varying from run to run with where they landed, the same in every
      -- round of a run. Where they land varies; what is live does not: a
      -- leak shows as growth from round to round (at most ~200 KiB seen;
      -- 1 MiB is ~400 bytes per attacking connection).
      local slack = RSS_SLACK[loop]
      for round = 1, ROUNDS do
        assert.is_true(rounds[round].rss <= rss0 + slack,
          ("RSS: %d KiB before, %d during round %d, %d after"):format(
            rss0, rounds[round].rss_attack, round, rounds[round].rss))
      end
      assert.is_true(rounds[ROUNDS].rss - rounds[1].rss <= RSS_GROWTH,
        ("RSS after each round grew: %d KiB after round 1, %d after round %d"):format(
          rounds[1].rss, rounds[ROUNDS].rss, ROUNDS))
      assert.is_truthy(server:output():find("servername callback: refusing bad.example", 1, true),
        server:output())
    end)
  end)
end
