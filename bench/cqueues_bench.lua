--- The benchmark workloads through cqueues + luaossl (Debian's lua-cqueues,
-- lua-luaossl), for comparison.
-- cqueues does TLS on its own sockets inside its scheduler, so this runs over
-- loopback TCP in one process, inside a cqueues controller: handshakes run
-- a client coroutine and a server coroutine (starttls yields until the
-- handshake is done, so one coroutine cannot drive both sides); bulk
-- transfer streams batches of 64 KiB from one coroutine, as the lunatls and
-- LuaSec benchmarks do (xwrite each write unbuffered, then xread the batch).
-- What differs, honestly:
-- * cqueues reads through its own buffer: one xread takes the whole batch.
-- * The client checks the host name through luaossl's X509_VERIFY_PARAM
--   setHost (OpenSSL's default host flags: there is no setter for
--   NEVER_CHECK_SUBJECT; the certificate has a SAN, so the outcome is the
--   same).
-- * luaossl exposes no session get/set on an SSL, so there is no resumption
--   workload.
--
--   lua5.4 bench/cqueues_bench.lua WORKLOAD N [FIXTURES]
--
-- WORKLOAD: handshake | bulk16k | bulk1k | bulk64.

local ok_cq, cqueues = pcall(require, "cqueues")
if not ok_cq or not pcall(require, "openssl.ssl") then
  print("SKIP impl=cqueues reason=not-installed")
  os.exit(0)
end
local socket = require "cqueues.socket"
local ssl = require "openssl.ssl"
local context = require "openssl.ssl.context"
local x509 = require "openssl.x509"
local pkey = require "openssl.pkey"
local store = require "openssl.x509.store"

local clock = os.clock
-- msg1k: 1 KiB messages, each received before the next is sent (a batch of one)
local SIZES = { bulk16k = 16384, bulk1k = 1024, bulk64 = 64, msg1k = 1024 }
local BATCH_BYTES = 64 * 1024 -- in flight at once
local HOST = "localhost"
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."

local workload, n, fixtures = arg[1], tonumber(arg[2]), arg[3] or (root .. "/spec/fixtures")
if not workload or not n or n <= 0 then
  io.stderr:write("usage: cqueues_bench.lua WORKLOAD N [FIXTURES]\n")
  os.exit(2)
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local server_ctx = context.new("TLS", true)
server_ctx:setCertificate(x509.new(slurp(fixtures .. "/server.pem")))
server_ctx:setPrivateKey(pkey.new(slurp(fixtures .. "/server.key")))

local client_ctx = context.new("TLS", false)
local trust = store.new()
trust:add(fixtures .. "/ca.pem")
client_ctx:setStore(trust)
client_ctx:setVerify(context.VERIFY_PEER)

local function report(name, count, seconds, rate, unit)
  print(string.format("RESULT impl=cqueues workload=%s n=%d seconds=%.6f rate=%.3f unit=%s",
    name, count, seconds, rate, unit))
end

--- A client SSL with SNI and the host-name check.
local function client_ssl()
  local s = ssl.new(client_ctx)
  s:setHostName(HOST)
  local param = s:getParam()
  param:setHost(HOST)
  s:setParam(param)
  return s
end

local function listener()
  local l = assert(socket.listen { host = "127.0.0.1", port = 0, nodelay = true })
  assert(l:listen())
  local _, _, port = l:localname()
  return l, port
end

local function connect(port)
  return assert(socket.connect { host = "127.0.0.1", port = port, nodelay = true })
end

local function run(cq)
  local ok, err = cq:loop()
  if not ok then error(err) end
end

local function run_handshakes(count)
  local cq = cqueues.new()
  local l, port = listener()
  local t0 = clock()
  cq:wrap(function()
    for _ = 1, count do
      local c = connect(port)
      assert(c:starttls(client_ssl()))
      c:close()
    end
  end)
  cq:wrap(function()
    for _ = 1, count do
      local s = assert(l:accept())
      assert(s:starttls(server_ctx))
      s:close()
    end
  end)
  run(cq)
  local t = clock() - t0
  l:close()
  report("handshake", count, t, count / t, "hs/s")
end

--- Streams count writes of one size as the other two benchmarks do: the
-- client writes a batch of up to 64 KiB (the kernel takes it all), then the
-- server reads it; one coroutine drives both sides.
local function run_bulk(name, count)
  local size = SIZES[name]
  local chunk = string.rep("x", size)
  local batch = name == "msg1k" and 1 or math.max(1, BATCH_BYTES // size)
  local cq = cqueues.new()
  local l, port = listener()
  local client, server
  cq:wrap(function()
    client = connect(port)
    client:setmode("b", "bn")
    assert(client:starttls(client_ssl()))
  end)
  cq:wrap(function()
    server = assert(l:accept())
    server:setmode("b", "bn")
    assert(server:starttls(server_ctx))
  end)
  run(cq)
  local got = 0
  local t0 = clock()
  cq:wrap(function()
    local sent = 0
    while sent < count do
      local k = math.min(batch, count - sent)
      for _ = 1, k do assert(client:xwrite(chunk, "bn")) end
      sent = sent + k
      got = got + #assert(server:xread(k * size, "b"))
    end
  end)
  run(cq)
  local t = clock() - t0
  if got ~= size * count then error("bulk: bytes lost") end
  client:close()
  server:close()
  l:close()
  if name == "msg1k" then report(name, count, t, count / t, "msg/s")
  else report(name, count, t, got / t / (1024 * 1024), "MiB/s") end
end

if workload == "handshake" then
  run_handshakes(n)
elseif SIZES[workload] then
  run_bulk(workload, n)
else
  print("SKIP impl=cqueues workload=" .. workload .. " reason=unsupported")
end
