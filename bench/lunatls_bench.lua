--- The benchmark workloads through lunatls's public API.
-- The same work as bench/harness.c, step by step: a client and a server in
-- one process, each connection on its own BIO pair, bytes moved between the
-- two network ends after every call. Over loopback TCP, to compare with
-- LuaSec and cqueues, which need a socket: the `sock_*` workloads keep the
-- BIO pairs and move the bytes through LuaSocket sockets (lunatls's own way
-- over any transport), the `tcp_*` workloads give the SSL the socket itself
-- (`new_conn{fd = ...}`). Both stream bulk writes in batches of 64 KiB, as
-- bench/luasec_bench.lua and bench/cqueues_bench.lua do. The `stream_*`
-- workloads go through the stream layer users call (`tls.wrap` over a
-- memory pipe, `lunatls.transport.memory`, in a scheduler task): bulk sends
-- a batch of 64 KiB, then receives it with receive_some (in one task, so
-- that no scheduler switch is counted that the C loop does not make
-- either); msg1k sends and receives one 1 KiB message at a time. The
-- `zc_*` workloads are the in-process ones without Lua strings: ciphertext
-- moved by `bio:move_to`, plaintext read by `conn:read_into` into one Buffer.
--
--   lua5.4 bench/lunatls_bench.lua WORKLOAD N [FIXTURES]
--
-- WORKLOAD: handshake | resume | bulk16k | bulk1k | bulk64 | msg1k | memory |
-- zc_bulk16k | zc_bulk1k | zc_bulk64 | zc_msg1k | memory_client | memory_server |
-- tcp_memory_client | tcp_memory_server | adopted_memory_client | adopted_memory_server |
-- tcp_handshake | tcp_bulk16k | tcp_bulk1k | tcp_bulk64 | tcp_msg1k |
-- sock_handshake | sock_bulk16k | sock_bulk1k | sock_bulk64 | sock_msg1k |
-- stream_handshake | stream_bulk16k | stream_bulk1k | stream_bulk64 | stream_msg1k,
-- and the same with stream_sock_ and stream_tcp_ (over loopback TCP).
-- Prints one line: RESULT impl=lunatls workload=... n=... seconds=... rate=... unit=...
-- Time is process CPU time (os.clock) of the measured loop only.

local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
-- LUNATLS_BUILD=dir: the lunatls.core of another build (to compare commits).
package.cpath = (os.getenv("LUNATLS_BUILD") or (root .. "/build")) .. "/?.so;" .. package.cpath

local tls = require "lunatls"

-- BENCH_GC=incremental|generational picks the collector's mode (to study
-- its share; the stand-alone lua5.4 interpreter runs generational).
if os.getenv("BENCH_GC") then collectgarbage(os.getenv("BENCH_GC")) end

local clock = os.clock
local HOST = "localhost"
local SIZES = { bulk16k = 16384, bulk1k = 1024, bulk64 = 64 }
local BATCH_BYTES = 64 * 1024 -- in flight at once over TCP, or in the memory pipe (256 KiB)

local workload, n, fixtures = arg[1], tonumber(arg[2]), arg[3] or (root .. "/spec/fixtures")
if not workload or not n or n <= 0 then
  io.stderr:write("usage: lunatls_bench.lua WORKLOAD N [FIXTURES]\n")
  os.exit(2)
end

local server_ctx = assert(tls.new_context {
  mode = "server",
  certificate = fixtures .. "/server.pem",
  key = fixtures .. "/server.key",
})
local client_ctx = assert(tls.new_context {
  mode = "client",
  cafile = fixtures .. "/ca.pem",
})

local function report(name, count, seconds, rate, unit)
  print(string.format("RESULT impl=lunatls workload=%s n=%d seconds=%.6f rate=%.3f unit=%s",
    name, count, seconds, rate, unit))
end

--- The report of a bulk run (MiB/s), or of a message run (msg/s).
local function report_stream(name, count, seconds, bytes)
  if name:match("msg1k$") then report(name, count, seconds, count / seconds, "msg/s")
  else report(name, count, seconds, bytes / seconds / (1024 * 1024), "MiB/s") end
end

--- Moves what one network end holds into the other: `to:write(from:read())`.
local function pump(from, to)
  local data = from:read()
  if data and to:write(data) ~= #data then error("pump: peer buffer full") end
end

--- Drives both sides, moving bytes after every call, until both are done.
local function handshake(client, server)
  local cnet, snet = client:bio(), server:bio()
  local client_done, server_done = false, false
  for _ = 1, 20 do
    if not client_done then
      local status, err = client:do_handshake()
      if not status then error("client handshake: " .. err) end
      client_done = status == "done"
    end
    pump(cnet, snet)
    if not server_done then
      local status, err = server:do_handshake()
      if not status then error("server handshake: " .. err) end
      server_done = status == "done"
    end
    pump(snet, cnet)
    if client_done and server_done then return end
  end
  error("handshake does not finish")
end

--- Reads until want_read, as an event loop does; returns the bytes read.
local function read_all(conn)
  local total = 0
  while true do
    local data, status = conn:read()
    if not data then
      if status ~= "want_read" then error("read: " .. tostring(status)) end
      return total
    end
    total = total + #data
  end
end

--- A connected pair with the server's session tickets already read.
local function open_pair()
  local client = client_ctx:new_conn { server_name = HOST }
  local server = server_ctx:new_conn()
  handshake(client, server)
  read_all(client)
  return client, server
end

local function run_handshakes(count)
  local t0 = clock()
  for _ = 1, count do
    local client = client_ctx:new_conn { server_name = HOST }
    local server = server_ctx:new_conn()
    handshake(client, server)
    client:close()
    server:close()
  end
  local t = clock() - t0
  report("handshake", count, t, count / t, "hs/s")
end

local function run_resumed(count)
  -- Kept open until the end: closing without a shutdown would mark the
  -- session not resumable (OpenSSL's ssl_clear_bad_session).
  local first_client, first_server = open_pair()
  local session = first_client:session()
  local t0 = clock()
  for _ = 1, count do
    local client = client_ctx:new_conn { server_name = HOST, session = session }
    local server = server_ctx:new_conn()
    handshake(client, server)
    if not client:session_reused() then error("session not reused") end
    if client:shutdown() ~= "want_read" then error("shutdown") end
    client:close()
    server:close()
  end
  local t = clock() - t0
  first_client:close()
  first_server:close()
  report("resume", count, t, count / t, "hs/s")
end

-- Two ways an application moves the bytes in the in-process workloads:
-- with Lua strings (`to:write(from:read())`, `conn:read()`), or without any
-- (the `zc_*` workloads: `bio:move_to` ring to ring, `conn:read_into` one
-- reused Buffer). Each returns its `pump(from, to)` and `read_all(conn)`.
local function string_ways()
  return pump, read_all
end

local function zero_copy_ways()
  local buffer = tls.new_buffer(16384)
  local function move(from, to)
    if not from:move_to(to) then error("pump: peer end closed") end
  end
  local function read_into_all(conn)
    local total = 0
    while true do
      local n, status = conn:read_into(buffer)
      if not n then
        if status ~= "want_read" then error("read_into: " .. tostring(status)) end
        return total
      end
      total = total + n
    end
  end
  return move, read_into_all
end

--- Streams count writes of one size: the client writes until its BIO pair
-- is full (want_write); then the bytes move to the server, which reads until
-- want_read, and the client writes the same chunk again.
local function run_bulk(name, count, ways)
  local size = SIZES[name:gsub("^zc_", "")]
  local move, drain = ways()
  local chunk = string.rep("x", size)
  local client, server = open_pair()
  local cnet, snet = client:bio(), server:bio()
  local written, got = 0, 0
  local t0 = clock()
  while written < count do
    local n, status = client:write(chunk)
    if n == size then
      written = written + 1
    elseif status == "want_write" then
      move(cnet, snet)
      got = got + drain(server)
    else
      error("write: " .. tostring(n or status))
    end
  end
  move(cnet, snet)
  got = got + drain(server)
  local t = clock() - t0
  if got ~= size * count then error("bulk: bytes lost") end
  client:close()
  server:close()
  report(name, count, t, got / t / (1024 * 1024), "MiB/s")
end

--- count messages of 1 KiB, each moved and read before the next is written:
-- the cost of every call, not amortised over a stream.
local function run_messages(name, count, ways)
  local move, drain = ways()
  local chunk = string.rep("x", 1024)
  local client, server = open_pair()
  local cnet, snet = client:bio(), server:bio()
  local got = 0
  local t0 = clock()
  for _ = 1, count do
    if client:write(chunk) ~= 1024 then error("write") end
    move(cnet, snet)
    got = got + drain(server)
  end
  local t = clock() - t0
  if got ~= 1024 * count then error("msg1k: bytes lost") end
  client:close()
  server:close()
  report(name, count, t, count / t, "msg/s")
end

--- Resident set size in bytes.
local function rss_bytes()
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4096
end

-- The socket of each fd-mode connection the memory workloads keep.
local sockets = setmetatable({}, { __mode = "k" })

--- Closes a connection end (and its socket, over TCP).
local function close_end(conn)
  conn:close()
  if sockets[conn] then sockets[conn]:close() end
end

--- One idle established pair: a handshake, then one small message each way.
local function idle_pair()
  local client, server = open_pair()
  local cnet, snet = client:bio(), server:bio()
  assert(client:write("ping") == 4)
  pump(cnet, snet)
  assert(read_all(server) == 4)
  assert(server:write("pong") == 4)
  pump(snet, cnet)
  assert(read_all(client) == 4)
  return client, server
end

-- ---- over loopback TCP (fd mode) ----

--- A connected pair of LuaSocket sockets. The core's workloads set
-- TCP_NODELAY and timeout 0 themselves (as the C harness and LuaSec's
-- benchmark do); `as_accepted`: leave the sockets as connect and accept give
-- them, for the stream's transports, which set what they need (a second
-- setsockopt would count in the stream's handshakes alone).
local function tcp_pair(listener, as_accepted)
  local socket = require "socket"
  local c = assert(socket.tcp())
  assert(c:connect(listener:getsockname()))
  local s = assert(listener:accept())
  if not as_accepted then
    for _, sock in ipairs { c, s } do
      sock:setoption("tcp-nodelay", true)
      sock:settimeout(0)
    end
  end
  return c, s
end

local function tcp_listener()
  local socket = require "socket"
  return assert(socket.bind("127.0.0.1", 0))
end

--- One listener for the workloads that open a connection per operation
-- (as the C harness has one per run): a listener per connection would
-- count its bind and listen in every handshake.
local the_listener
local function shared_listener()
  the_listener = the_listener or tcp_listener()
  return the_listener
end

--- A client and a server connection in fd mode (OpenSSL on the sockets or
-- descriptors `c`, `s`; `close_fd`: they own them), reading ahead as the
-- stream does over descriptors and as the C harness's tcp_ workloads do.
local function fd_conns(c, s, close_fd)
  return client_ctx:new_conn { server_name = HOST, fd = c, close_fd = close_fd, read_ahead = true },
         server_ctx:new_conn { fd = s, close_fd = close_fd, read_ahead = true }
end

--- The same handshake loop without the byte moving: the kernel does it.
local function tcp_handshake(client, server)
  local client_done, server_done = false, false
  for _ = 1, 1000 do
    if not client_done then
      local status, err = client:do_handshake()
      if not status then error("client handshake: " .. err) end
      client_done = status == "done"
    end
    if not server_done then
      local status, err = server:do_handshake()
      if not status then error("server handshake: " .. err) end
      server_done = status == "done"
    end
    if client_done and server_done then return end
  end
  error("handshake does not finish")
end

local function run_tcp_handshakes(count)
  local listener = tcp_listener()
  local t0 = clock()
  for _ = 1, count do
    local csock, ssock = tcp_pair(listener)
    local client, server = fd_conns(csock, ssock)
    tcp_handshake(client, server)
    client:close()
    server:close()
    csock:close()
    ssock:close()
  end
  local t = clock() - t0
  listener:close()
  report("tcp_handshake", count, t, count / t, "hs/s")
end

--- Reads (fd mode, nonblocking socket) until `size` bytes arrived and
-- nothing more waits, as an event loop's reader does before it sleeps.
local function tcp_read_exactly(conn, size)
  local got = 0
  for _ = 1, 100000 do
    local data, status = conn:read()
    if data then got = got + #data
    elseif status ~= "want_read" then error("read: " .. tostring(status))
    elseif got >= size then return end
  end
  error("read: nothing arrives")
end

--- The descriptor of `sock`, taken from it: the caller's connection owns
-- it now (new_conn{close_fd = true}); the LuaSocket object, holding none,
-- goes with its ~9 KB (as lunatls.transport.fd.adopt does).
local function take_descriptor(sock)
  local fd = math.tointeger(sock:getfd())
  sock:setfd(-1)
  return fd
end

--- The TCP (fd mode) counterpart of idle_pair; `adopt`: the connections
-- own their descriptors and no LuaSocket object stays.
local function tcp_idle_pair(adopt)
  local csock, ssock = tcp_pair(shared_listener())
  local cfd, sfd = csock, ssock
  if adopt then cfd, sfd = take_descriptor(csock), take_descriptor(ssock) end
  local client, server = fd_conns(cfd, sfd, adopt)
  tcp_handshake(client, server)
  assert(client:write("ping") == 4)
  tcp_read_exactly(server, 4)
  assert(server:write("pong") == 4)
  tcp_read_exactly(client, 4)
  if not adopt then sockets[client], sockets[server] = csock, ssock end
  return client, server
end

local function tcp_adopted_idle_pair()
  return tcp_idle_pair(true)
end

--- `count` idle established connection ends, made by `make_pair` (in
-- process, or over loopback TCP): `keep` "both" (count/2 client-server
-- pairs), or only the "client" or the "server" end of `count` pairs (the
-- other end closed at once, its memory reused by the next pair): what one
-- end of each kind costs.
local function run_memory(name, count, keep, make_pair)
  local conns = {}
  collectgarbage("collect")
  local rss0, lua0 = rss_bytes(), collectgarbage("count") * 1024
  local pairs_count = keep == "both" and count // 2 or count
  for _ = 1, pairs_count do
    local client, server = make_pair()
    if keep == "client" then close_end(server) else conns[#conns + 1] = server end
    if keep == "server" then close_end(client) else conns[#conns + 1] = client end
  end
  collectgarbage("collect")
  local rss1, lua1 = rss_bytes(), collectgarbage("count") * 1024
  local total = #conns
  print(string.format("RESULT impl=lunatls workload=%s n=%d rss_per_conn=%.0f lua_per_conn=%.0f unit=B",
    name, total, (rss1 - rss0) / total, (lua1 - lua0) / total))
  for _, conn in ipairs(conns) do close_end(conn) end
end

--- Streams count writes of one size: the client writes a batch of up to
-- 64 KiB (the kernel takes it all), then the server reads until it has it.
--- Writes in a batch: BATCH_BYTES' worth, or one for 1 KiB messages.
local function batch_of(name, size)
  return name:match("msg1k$") and 1 or math.max(1, BATCH_BYTES // size)
end

local function run_tcp_bulk(name, count, size)
  local chunk = string.rep("x", size)
  local batch = batch_of(name, size)
  local listener = tcp_listener()
  local csock, ssock = tcp_pair(listener)
  local client, server = fd_conns(csock, ssock)
  tcp_handshake(client, server)
  read_all(client)
  local sent, got = 0, 0
  local t0 = clock()
  while sent < count do
    for _ = 1, math.min(batch, count - sent) do
      if client:write(chunk) ~= size then error("write") end
      sent = sent + 1
    end
    while got < size * sent do got = got + read_all(server) end
  end
  local t = clock() - t0
  client:close()
  server:close()
  csock:close()
  ssock:close()
  listener:close()
  report_stream(name, count, t, got)
end

-- ---- BIO pairs over loopback TCP (LuaSocket carries the bytes) ----
-- lunatls's own design: TLS on a BIO pair, the application moving bytes
-- between the network end and its socket (what the coroutine layer does).

--- Sends everything the connection wrote (after every call, as the API asks).
local function flush(net, sock)
  local data = net:read()
  if not data then return end
  local i = 1
  while i <= #data do
    local last, err, partial = sock:send(data, i)
    if last then
      i = last + 1
    elseif err == "timeout" then
      i = partial + 1
    else
      error("send: " .. err)
    end
  end
end

--- Feeds what the socket holds into the network end (no more than it takes).
local function feed(sock, net)
  local room = net:write_guarantee()
  if room == 0 then return end
  local data, err, partial = sock:receive(room)
  data = data or partial
  if err and err ~= "timeout" then error("receive: " .. err) end
  if #data > 0 and net:write(data) ~= #data then error("feed: network end full") end
end

local function sock_handshake(client, server, csock, ssock)
  local cnet, snet = client:bio(), server:bio()
  local client_done, server_done = false, false
  for _ = 1, 1000 do
    if not client_done then
      feed(csock, cnet)
      local status, err = client:do_handshake()
      if not status then error("client handshake: " .. err) end
      flush(cnet, csock)
      client_done = status == "done"
    end
    if not server_done then
      feed(ssock, snet)
      local status, err = server:do_handshake()
      if not status then error("server handshake: " .. err) end
      flush(snet, ssock)
      server_done = status == "done"
    end
    if client_done and server_done then return end
  end
  error("handshake does not finish")
end

local function run_sock_handshakes(count)
  local listener = tcp_listener()
  local t0 = clock()
  for _ = 1, count do
    local csock, ssock = tcp_pair(listener)
    local client = client_ctx:new_conn { server_name = HOST }
    local server = server_ctx:new_conn()
    sock_handshake(client, server, csock, ssock)
    client:close()
    server:close()
    csock:close()
    ssock:close()
  end
  local t = clock() - t0
  listener:close()
  report("sock_handshake", count, t, count / t, "hs/s")
end

--- Streams count writes as run_tcp_bulk does, through the BIO pairs.
local function run_sock_bulk(name, count, size)
  local chunk = string.rep("x", size)
  local batch = batch_of(name, size)
  local listener = tcp_listener()
  local csock, ssock = tcp_pair(listener)
  local client = client_ctx:new_conn { server_name = HOST }
  local server = server_ctx:new_conn()
  local cnet, snet = client:bio(), server:bio()
  sock_handshake(client, server, csock, ssock)
  local sent, got = 0, 0
  local t0 = clock()
  while sent < count do
    for _ = 1, math.min(batch, count - sent) do
      if client:write(chunk) ~= size then error("write") end
      flush(cnet, csock)
      sent = sent + 1
    end
    while got < size * sent do
      feed(ssock, snet)
      got = got + read_all(server)
    end
  end
  local t = clock() - t0
  client:close()
  server:close()
  csock:close()
  ssock:close()
  listener:close()
  report_stream(name, count, t, got)
end

-- ---- the stream layer ----

--- Runs fn in a scheduler task; raises what it raised.
local function in_task(fn)
  local sched = require("lunatls.scheduler").new()
  local failure
  sched:spawn(function()
    local ok, err = pcall(fn)
    if not ok then failure = err end
  end)
  assert(sched:run())
  if failure then error(failure, 0) end
end

-- The transports a stream workload runs over: stream_* a memory pipe,
-- stream_sock_* LuaSocket sockets over loopback TCP (the socket transport:
-- lunatls's BIO pair, the driver moving the bytes), stream_tcp_* the same
-- sockets in fd mode (OpenSSL on the socket).
local STREAM_OVER = { stream = "memory", stream_sock = "socket", stream_tcp = "fd" }

--- Two connected transports of `kind`, and a function that closes what
-- they leave open.
local function transports(kind)
  if kind == "memory" then
    local a, b = require("lunatls.transport.memory").pipe()
    return a, b, function() end
  end
  local csock, ssock = tcp_pair(shared_listener(), true)
  local new = require("lunatls.transport." .. kind).new
  return new(csock), new(ssock), function() csock:close(); ssock:close() end
end

--- A client and a server stream over transports of `kind`, handshaken in
-- `sched` (default: a new scheduler; a server runs one for all its
-- connections, so the handshake workloads reuse theirs). The client's task
-- runs first, as the client steps first in the C harness's loop and in
-- LuaSec's and cqueues' benchmarks: the server's first read finds the
-- ClientHello there (the other order adds a read that finds nothing, and a
-- wait, to the server's side).
local function open_streams(kind, sched)
  local a, b, done = transports(kind)
  local client = tls.wrap(a, client_ctx, { server_name = HOST })
  local server = tls.wrap(b, server_ctx)
  sched = sched or require("lunatls.scheduler").new()
  sched:spawn(function() assert(client:handshake()) end)
  sched:spawn(function() assert(server:handshake()) end)
  assert(sched:run())
  return client, server, done
end

local function run_stream_handshakes(name, count, kind)
  local sched = require("lunatls.scheduler").new()
  local t0 = clock()
  for _ = 1, count do
    local client, server, done = open_streams(kind, sched)
    client:abort()
    server:abort()
    done()
  end
  local t = clock() - t0
  report(name, count, t, count / t, "hs/s")
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

local function run_stream_bulk(name, count, kind, size)
  local chunk = string.rep("x", size)
  local batch = math.max(1, BATCH_BYTES // size)
  local client, server, done = open_streams(kind)
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
  done()
  report(name, count, t, size * count / t / (1024 * 1024), "MiB/s")
end

local function run_stream_messages(name, count, kind)
  local chunk = string.rep("x", 1024)
  local client, server, done = open_streams(kind)
  local t
  in_task(function()
    local t0 = clock()
    for _ = 1, count do
      assert(client:send(chunk))
      assert(#server:receive(1024) == 1024)
    end
    t = clock() - t0
  end)
  done()
  report(name, count, t, count / t, "msg/s")
end

--- stream_*, stream_sock_*, stream_tcp_*; false if workload is not one.
local function run_stream(workload, count)
  local prefix, rest = workload:match("^(stream.-)_(%w+)$")
  local kind = STREAM_OVER[prefix]
  if not kind then return false end
  if rest == "handshake" then run_stream_handshakes(workload, count, kind)
  elseif rest == "msg1k" then run_stream_messages(workload, count, kind)
  elseif SIZES[rest] then run_stream_bulk(workload, count, kind, SIZES[rest])
  else return false end
  return true
end

if workload == "handshake" then
  run_handshakes(n)
elseif workload == "resume" then
  run_resumed(n)
elseif SIZES[workload] then
  run_bulk(workload, n, string_ways)
elseif workload:match("^zc_") and SIZES[workload:sub(4)] then
  run_bulk(workload, n, zero_copy_ways)
elseif workload == "msg1k" then
  run_messages(workload, n, string_ways)
elseif workload == "zc_msg1k" then
  run_messages(workload, n, zero_copy_ways)
elseif workload == "memory" then
  run_memory(workload, n, "both", idle_pair)
elseif workload == "memory_client" or workload == "memory_server" then
  run_memory(workload, n, workload:sub(8), idle_pair)
elseif workload == "tcp_memory_client" or workload == "tcp_memory_server" then
  run_memory(workload, n, workload:sub(12), tcp_idle_pair)
elseif workload == "adopted_memory_client" or workload == "adopted_memory_server" then
  run_memory(workload, n, workload:sub(16), tcp_adopted_idle_pair)
elseif workload == "tcp_handshake" then
  run_tcp_handshakes(n)
elseif workload:match("^tcp_") and (SIZES[workload:sub(5)] or workload == "tcp_msg1k") then
  run_tcp_bulk(workload, n, SIZES[workload:sub(5)] or 1024)
elseif workload == "sock_handshake" then
  run_sock_handshakes(n)
elseif workload:match("^sock_") and (SIZES[workload:sub(6)] or workload == "sock_msg1k") then
  run_sock_bulk(workload, n, SIZES[workload:sub(6)] or 1024)
elseif not run_stream(workload, n) then
  io.stderr:write("lunatls_bench.lua: unknown workload " .. workload .. "\n")
  os.exit(2)
end
