--- The benchmark workloads through LuaSec (Debian's lua-sec), for comparison.
-- LuaSec wraps a LuaSocket socket, so this runs over loopback TCP in one
-- process: the client and the server are two nonblocking sockets driven in
-- turn, as bench/lunatls_bench.lua's tcp_* workloads do (the same handshake
-- loop; bulk writes streamed in batches of 64 KiB).
-- What differs, honestly:
-- * LuaSec 1.2 cannot check the server's host name: the client verifies the
--   chain (verify = "peer") and sends SNI, but does no host-name check (a
--   little less work than lunatls and the C harness do).
-- * LuaSec has no session API, so there is no resumption workload.
-- * Reads use LuaSec's receive(n) (its buffer, LuaSocket's patterns).
--
--   lua5.4 bench/luasec_bench.lua WORKLOAD N [FIXTURES]
--   LUNATLS_LUASEC=1 lua5.4 bench/luasec_bench.lua WORKLOAD N   -- the same program
--                                                        on lunatls.luasec
--
-- WORKLOAD: handshake | bulk16k | bulk1k | bulk64 | msg1k.

local clock = os.clock
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."

local impl = "luasec"
if os.getenv("LUNATLS_LUASEC") then -- LuaSec's API on lunatls, for the same program
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = (os.getenv("LUNATLS_BUILD") or (root .. "/build")) .. "/?.so;" .. package.cpath
  package.loaded.ssl = require "lunatls.luasec"
  impl = "lunatls.luasec"
end
local ok_ssl, ssl = pcall(require, "ssl")
if not ok_ssl then
  print("SKIP impl=luasec reason=not-installed")
  os.exit(0)
end
local socket = require "socket"
-- msg1k: 1 KiB messages, each received before the next is sent (a batch of one)
local SIZES = { bulk16k = 16384, bulk1k = 1024, bulk64 = 64, msg1k = 1024 }
local BATCH_BYTES = 64 * 1024 -- in flight at once

local workload, n, fixtures = arg[1], tonumber(arg[2]), arg[3] or (root .. "/spec/fixtures")
if not workload or not n or n <= 0 then
  io.stderr:write("usage: luasec_bench.lua WORKLOAD N [FIXTURES]\n")
  os.exit(2)
end

local server_ctx = assert(ssl.newcontext {
  mode = "server",
  protocol = "any",
  certificate = fixtures .. "/server.pem",
  key = fixtures .. "/server.key",
  verify = "none",
})
local client_ctx = assert(ssl.newcontext {
  mode = "client",
  protocol = "any",
  cafile = fixtures .. "/ca.pem",
  verify = "peer",
})

local function report(name, count, seconds, rate, unit)
  print(string.format("RESULT impl=" .. impl .. " workload=%s n=%d seconds=%.6f rate=%.3f unit=%s",
    name, count, seconds, rate, unit))
end

local function tcp_pair(listener)
  local c = assert(socket.tcp())
  assert(c:connect(listener:getsockname()))
  local s = assert(listener:accept())
  c:setoption("tcp-nodelay", true)
  s:setoption("tcp-nodelay", true)
  return c, s
end

local function wrap_pair(listener)
  local csock, ssock = tcp_pair(listener)
  local client = assert(ssl.wrap(csock, client_ctx))
  local server = assert(ssl.wrap(ssock, server_ctx))
  client:sni("localhost")
  client:settimeout(0)
  server:settimeout(0)
  return client, server
end

local function want(err)
  return err == "wantread" or err == "wantwrite" or err == "timeout"
end

local function handshake(client, server)
  local client_done, server_done = false, false
  for _ = 1, 1000 do
    if not client_done then
      local ok, err = client:dohandshake()
      if not ok and not want(err) then error("client handshake: " .. tostring(err)) end
      client_done = ok == true
    end
    if not server_done then
      local ok, err = server:dohandshake()
      if not ok and not want(err) then error("server handshake: " .. tostring(err)) end
      server_done = ok == true
    end
    if client_done and server_done then return end
  end
  error("handshake does not finish")
end

local function run_handshakes(count)
  local listener = assert(socket.bind("127.0.0.1", 0))
  local t0 = clock()
  for _ = 1, count do
    local client, server = wrap_pair(listener)
    handshake(client, server)
    client:close()
    server:close()
  end
  local t = clock() - t0
  listener:close()
  report("handshake", count, t, count / t, "hs/s")
end

--- Receives exactly size bytes, spinning on wantread.
local function receive(conn, size)
  local need = size
  while need > 0 do
    local data, err, partial = conn:receive(need)
    if data then return end
    if not want(err) then error("receive: " .. tostring(err)) end
    need = need - #partial
  end
end

--- Streams count writes of one size: the client sends a batch of up to
-- 64 KiB (the kernel takes it all), then the server receives it.
local function run_bulk(name, count)
  local size = SIZES[name]
  local chunk = string.rep("x", size)
  local batch = name == "msg1k" and 1 or math.max(1, BATCH_BYTES // size)
  local listener = assert(socket.bind("127.0.0.1", 0))
  local client, server = wrap_pair(listener)
  handshake(client, server)
  local sent = 0
  local t0 = clock()
  while sent < count do
    local k = math.min(batch, count - sent)
    for _ = 1, k do
      local last, err = client:send(chunk)
      if last ~= size then error("send: " .. tostring(err)) end
    end
    sent = sent + k
    receive(server, k * size)
  end
  local t = clock() - t0
  client:close()
  server:close()
  listener:close()
  if name == "msg1k" then report(name, count, t, count / t, "msg/s")
  else report(name, count, t, size * count / t / (1024 * 1024), "MiB/s") end
end

if workload == "handshake" then
  run_handshakes(n)
elseif SIZES[workload] then
  run_bulk(workload, n)
else
  print("SKIP impl=luasec workload=" .. workload .. " reason=unsupported")
end
