--- The clients of `bench/connections.lua`, as their own process, on the
-- bundled scheduler:
--   lua5.4 bench/conn_client.lua <port> hold <n>
--     n connections at once, each a handshake and 1 KiB echoed; prints
--     `held <seconds> <failures>` once all n are established and echoed,
--     holds them 3 s (the driver measures the server then), closes them.
--   lua5.4 bench/conn_client.lua <port> rate <concurrency> <total>
--     `concurrency` workers, each connect + handshake + 1 KiB echo + close,
--     until `total` handshakes: prints `rate <handshakes per second>`.

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local tls = require "lunatls"
local socket = require "socket"
local scheduler = require "lunatls.scheduler"

local port, mode, a, b = tonumber(arg[1]), arg[2], tonumber(arg[3]), tonumber(arg[4])
local ctx = assert(tls.new_context { mode = "client", cafile = "spec/fixtures/ca.pem" })
local PAYLOAD = ("x"):rep(1024)
local gettime = socket.gettime

--- One client: a stream that has echoed 1 KiB, or nil, why.
local function session()
  local stream, message = tls.connect("127.0.0.1", port, ctx,
    { server_name = "localhost", timeout = 120, handshake_timeout = 120 })
  if not stream then return nil, message end
  -- no TIME_WAIT left behind on the client's ephemeral ports
  stream.transport.socket:setoption("linger", { on = true, timeout = 0 })
  local ok, why = stream:send(PAYLOAD)
  if ok then ok, why = stream:receive(#PAYLOAD) end
  if not ok then stream:close() return nil, why end
  return stream
end

local sched = scheduler.new()
local failures = 0

if mode == "hold" then
  local streams, done = {}, 0
  local started = gettime()
  for i = 1, a do
    sched:spawn(function()
      local stream, why = session()
      if not stream then
        failures = failures + 1
        if failures < 5 then io.stderr:write("client: ", tostring(why), "\n") end
      end
      streams[i] = stream
      done = done + 1
      if done == a then
        io.stdout:write(("held %.3f %d\n"):format(gettime() - started, failures))
        io.stdout:flush()
        sched:sleep(3) -- while the driver measures the server
        for _, s in pairs(streams) do s:close() end
      end
    end)
    if i % 100 == 0 then sched:run(0) end -- let the first ones start
  end
else
  local total, left = b, b
  local started = gettime()
  for _ = 1, a do
    sched:spawn(function()
      while left > 0 do
        left = left - 1
        local stream = session()
        if stream then stream:close() else failures = failures + 1 end
      end
    end)
  end
  sched:run()
  local seconds = gettime() - started
  io.stdout:write(("rate %.1f %d %.3f\n"):format(total / seconds, failures, seconds))
end
sched:run()
