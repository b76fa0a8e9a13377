--- For spec/24-scheduler_spec.lua, run as its own process (a hang must fail
-- the test, not stop the suite): a task of the luv backend works in Lua for
-- 0.2 s (libuv's clock, read at the last uv.run, goes stale), then waits
-- 0.05 s on a socket that stays silent. Prints what the wait returned:
-- `nil	timeout`.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path

local socket = require "socket"
local scheduler = require "lunatls.scheduler"

local listener = assert(socket.bind("127.0.0.1", 0))
local silent = socket.tcp()
assert(silent:connect(listener:getsockname()))
silent:settimeout(0)

local sched = scheduler.new { backend = "luv" }
local result
sched:spawn(function()
  scheduler.sleep(0.01) -- one uv.run: libuv reads its clock
  local busy_until = socket.gettime() + 0.2
  repeat until socket.gettime() >= busy_until
  result = { scheduler.wait_socket(silent, "read", socket.gettime() + 0.05) }
end)
assert(sched:run(5))
print(result[1], result[2])
