--- The benchmark workloads through the stream layer (`tls.wrap` over a
-- memory pipe, `lunatls.transport.memory`, in a scheduler task): the calls
-- users make, against bench/harness.c doing the same OpenSSL work over BIO
-- pairs (a memory pipe in C).
--
--   lua5.4 bench/stream_bench.lua WORKLOAD N [FIXTURES]
--
-- WORKLOAD: stream_handshake | stream_bulk16k | stream_bulk1k |
-- stream_bulk64 | stream_msg1k. As in bench/lunatls_bench.lua, the bulk
-- workloads send a batch and then receive it (in one task, so that no
-- scheduler switch is counted that the C loop does not make either), and
-- msg1k sends and receives one 1 KiB message at a time. Prints one RESULT
-- line, like the other drivers.

local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = (os.getenv("LUNATLS_BUILD") or (root .. "/build")) .. "/?.so;" .. package.cpath

local tls = require "lunatls"
local scheduler = require "lunatls.scheduler"
local memory = require "lunatls.transport.memory"

if os.getenv("BENCH_GC") then collectgarbage(os.getenv("BENCH_GC")) end

local clock = os.clock
local SIZES = { stream_bulk16k = 16384, stream_bulk1k = 1024, stream_bulk64 = 64 }
local BATCH_BYTES = 64 * 1024 -- sent before it is received: within the pipe's 256 KiB

local workload, n, fixtures = arg[1], tonumber(arg[2]), arg[3] or (root .. "/spec/fixtures")
if not workload or not n or n <= 0 then
  io.stderr:write("usage: stream_bench.lua WORKLOAD N [FIXTURES]\n")
  os.exit(2)
end

local server_ctx = assert(tls.new_context {
  mode = "server", certificate = fixtures .. "/server.pem", key = fixtures .. "/server.key",
})
local client_ctx = assert(tls.new_context { mode = "client", cafile = fixtures .. "/ca.pem" })

local function report(count, seconds, rate, unit)
  print(string.format("RESULT impl=lunatls workload=%s n=%d seconds=%.6f rate=%.3f unit=%s",
    workload, count, seconds, rate, unit))
end

--- Runs fn in a scheduler task; raises what it raised.
local function in_task(fn)
  local sched = scheduler.new()
  local failure
  sched:spawn(function()
    local ok, err = pcall(fn)
    if not ok then failure = err end
  end)
  assert(sched:run())
  if failure then error(failure, 0) end
end

--- A client and a server stream over one memory pipe, handshaken (the
-- client has read the server's session tickets with the first data).
local function open_streams(sched)
  local a, b = memory.pipe()
  local client = tls.wrap(a, client_ctx, { server_name = "localhost" })
  local server = tls.wrap(b, server_ctx)
  sched:spawn(function() assert(server:handshake()) end)
  sched:spawn(function() assert(client:handshake()) end)
  assert(sched:run())
  return client, server
end

local function run_handshakes(count)
  local t0 = clock()
  for _ = 1, count do
    local sched = scheduler.new()
    local client, server = open_streams(sched)
    client:abort()
    server:abort()
  end
  local t = clock() - t0
  report(count, t, count / t, "hs/s")
end

--- Receives exactly `total` bytes with receive_some, as a proxy does.
local function receive_bytes(stream, total)
  local got = 0
  while got < total do
    local data, message = stream:receive_some(65536)
    if not data then error("receive: " .. tostring(message)) end
    got = got + #data
  end
  return got
end

local function run_bulk(count)
  local size = SIZES[workload]
  local chunk = string.rep("x", size)
  local batch = math.max(1, BATCH_BYTES // size)
  local client, server = open_streams(scheduler.new())
  local t
  in_task(function()
    local sent, got = 0, 0
    local t0 = clock()
    while sent < count do
      local this_batch = math.min(batch, count - sent)
      for _ = 1, this_batch do assert(client:send(chunk)) end
      sent = sent + this_batch
      got = got + receive_bytes(server, size * this_batch)
    end
    t = clock() - t0
    if got ~= size * count then error("bulk: bytes lost") end
  end)
  report(count, t, size * count / t / (1024 * 1024), "MiB/s")
end

local function run_messages(count)
  local chunk = string.rep("x", 1024)
  local client, server = open_streams(scheduler.new())
  local t
  in_task(function()
    local t0 = clock()
    for _ = 1, count do
      assert(client:send(chunk))
      assert(#server:receive(1024) == 1024)
    end
    t = clock() - t0
  end)
  report(count, t, count / t, "msg/s")
end

if workload == "stream_handshake" then
  run_handshakes(n)
elseif SIZES[workload] then
  run_bulk(n)
elseif workload == "stream_msg1k" then
  run_messages(n)
else
  io.stderr:write("stream_bench.lua: unknown workload " .. workload .. "\n")
  os.exit(2)
end
