--- The echo server `bench/connections.lua` measures, as its own process:
-- `lua5.4 bench/conn_server.lua <loop>` with loop `scheduler` (the bundled
-- one; `LUNATLS_BACKEND` picks its backend), `cqueues` or `luv`. Prints
-- `ready <port>`, then echoes every client until killed.

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local tls = require "lunatls"
local socket = require "socket"

local loop = ... or "scheduler"
local ctx = assert(tls.new_context {
  mode = "server", certificate = "spec/fixtures/server.pem", key = "spec/fixtures/server.key",
})

-- 10,000 handshakes arriving at once take about 30 s on one core: the
-- default handshake deadline (10 s) would refuse the last ones. A server
-- expecting such bursts gives the handshake more time (or caps the number of
-- concurrent handshakes in its accept loop).
local OPTIONS = { handshake_timeout = 120 }

local function echo(stream)
  if stream:handshake() then
    while true do
      local data = stream:receive_some()
      if not data or not stream:send(data) then break end
    end
  end
  stream:close()
end

local listener = assert(socket.bind("127.0.0.1", 0, 4096))
io.stdout:write("ready ", select(2, listener:getsockname()), "\n")
io.stdout:flush()

if loop == "scheduler" then
  local scheduler = require "lunatls.scheduler"
  local socket_transport = require "lunatls.transport.socket"
  local sched = scheduler.new()
  sched:spawn(function()
    while true do
      local transport = socket_transport.accept(listener)
      if transport then sched:spawn(echo, tls.wrap(transport, ctx, OPTIONS)) end
    end
  end)
  sched:run()
elseif loop == "cqueues" then
  local cqueues = require "cqueues"
  local cq_transport = require "lunatls.transport.cqueues"
  local cq = cqueues.new()
  cq:wrap(function()
    while true do
      local transport = cq_transport.accept(listener)
      if transport then
        local stream = tls.wrap(transport, ctx, OPTIONS)
        cq:wrap(function() if not pcall(echo, stream) then stream:abort() end end)
      end
    end
  end)
  while true do cq:step() end
elseif loop == "luv" then
  local uv = require("lunatls.scheduler").luv()
  local luv_transport = require "lunatls.transport.luv"
  coroutine.wrap(function()
    while true do
      local transport = luv_transport.accept(listener)
      if transport then coroutine.wrap(echo)(tls.wrap(transport, ctx, OPTIONS)) end
    end
  end)()
  uv.run()
end
