--- Many connections per event loop (issue 10): one server process
-- (bench/conn_server.lua) on the bundled scheduler, cqueues or luv; the
-- clients in another process (bench/conn_client.lua).
--   * N concurrent TLS connections (default 10,000), each a handshake and
--     1 KiB echoed, all held open at once: the time to establish them all,
--     the server's peak RSS, and its bytes per idle connection;
--   * handshakes per second at 1, 100, 1,000 and 10,000 concurrent
--     connections, with the server's CPU time per handshake: the cost per
--     event must not grow with the number of connections.
--
--     lua5.4 bench/connections.lua [--n=10000] [--loops=scheduler,cqueues,luv] [--quick]
--
-- Needs `ulimit -n` above 2 n + 100 (run from `make bench`, which raises the
-- soft limit to the hard one first).

package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local socket = require "socket"
local process = require "helpers.process"

local options = { n = 10000, loops = "scheduler,cqueues,luv" }
for _, a in ipairs(arg) do
  local key, value = a:match("^%-%-([%w_]+)=?(.*)$")
  if not key then error("unknown argument " .. a) end
  options[key] = value ~= "" and value or true
end
local N = tonumber(options.n)
local CONCURRENCY = { 1, 100, 1000, 10000 }
local TOTAL = { [1] = 300, [100] = 2000, [1000] = 4000, [10000] = 10000 }
if options.quick then
  N, CONCURRENCY = 1000, { 1, 100, 1000 }
  TOTAL = { [1] = 100, [100] = 500, [1000] = 1000 }
end

local function read_file(path)
  local file = io.open(path, "rb")
  if not file then return "" end
  local text = file:read("a")
  file:close()
  return text
end

local function status(pid, field)
  return tonumber(read_file("/proc/" .. pid .. "/status"):match(field .. ":%s*(%d+)")) or 0
end

-- CPU seconds (user + system) the process has used.
local function cpu(pid)
  local stat = read_file("/proc/" .. pid .. "/stat"):gsub("^.-%) ", "")
  local fields = {}
  for word in stat:gmatch("%S+") do fields[#fields + 1] = word end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100 -- utime, stime (after pid, comm)
end

local function start_server(loop)
  local server = process.spawn("exec lua5.4 bench/conn_server.lua " .. loop)
  assert(server:wait_output("ready", 10), server:output())
  return server, tonumber(server:output():match("ready (%d+)"))
end

local function hold(loop)
  local server, port = start_server(loop)
  socket.sleep(0.3)
  local base = status(server.pid, "VmRSS")
  local client = process.spawn(("exec lua5.4 bench/conn_client.lua %d hold %d"):format(port, N))
  local ok = client:wait_output("held", 600)
  local seconds, failures = client:output():match("held (%S+) (%d+)")
  socket.sleep(1)
  local held = status(server.pid, "VmRSS")
  local peak = status(server.pid, "VmHWM")
  client:wait(30)
  client:kill()
  server:kill()
  assert(ok, "the clients did not finish: " .. client:output())
  return { seconds = tonumber(seconds), failures = tonumber(failures), base = base, held = held,
           peak = peak, per_conn = (held - base) * 1024 / N }
end

local function rates(loop)
  local server, port = start_server(loop)
  local out = {}
  for _, c in ipairs(CONCURRENCY) do
    local before = cpu(server.pid)
    local client = process.spawn(("exec lua5.4 bench/conn_client.lua %d rate %d %d"):format(
      port, c, TOTAL[c]))
    client:wait(600)
    local rate, failures = client:output():match("rate (%S+) (%d+)")
    client:kill()
    out[c] = { rate = tonumber(rate), failures = tonumber(failures),
               cpu_us = (cpu(server.pid) - before) * 1e6 / TOTAL[c], output = client:output() }
    socket.sleep(1)
  end
  server:kill()
  return out
end

local function backend_name(loop)
  if loop ~= "scheduler" then return loop end
  return "scheduler (" .. require("lunatls.scheduler").default_backend() .. ")"
end

print(("%d concurrent TLS connections per server process (handshake + 1 KiB echo each, "
       .. "all held open)"):format(N))
print(("%-22s %10s %10s %12s %12s %9s"):format("loop", "time s", "failed", "RSS held MiB",
  "peak MiB", "B/conn"))
for loop in options.loops:gmatch("[^,]+") do
  local r = hold(loop)
  print(("%-22s %10.2f %10d %12.1f %12.1f %9.0f"):format(backend_name(loop), r.seconds or -1,
    r.failures or -1, r.held / 1024, r.peak / 1024, r.per_conn))
end
print()
print("handshakes per second (connect + handshake + 1 KiB echo + close), and the server's CPU per handshake")
print("(nF: n of them failed; the rate counts successful ones only)")
io.write(("%-22s"):format("loop"))
for _, c in ipairs(CONCURRENCY) do io.write(("%20s"):format(c .. " conc.")) end
print()
for loop in options.loops:gmatch("[^,]+") do
  local r = rates(loop)
  io.write(("%-22s"):format(backend_name(loop)))
  for _, c in ipairs(CONCURRENCY) do
    local x = r[c]
    if x.rate and x.failures == 0 then
      io.write(("%11.0f/s %4.0fus"):format(x.rate, x.cpu_us))
    elseif x.rate then
      io.write(("%6.0f/s %4.0fus %3dF"):format(x.rate, x.cpu_us, x.failures))
    else
      io.write(("%20s"):format("failed"))
      io.stderr:write(x.output, "\n")
    end
  end
  print()
end
