--- A line-echo TLS server for spec/40-hostile_spec.lua, run as its own
-- process: `lua5.4 spec/helpers/hold_server.lua <loop>` with loop
-- `scheduler` (the bundled one), `cqueues` or `luv`. It prints
-- `ready <port>` once listening on 127.0.0.1 (an ephemeral port), then
-- serves until killed, with the stream's default limits. A client asking
-- for the name "bad.example" makes the servername callback raise.

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local tls = require "lunatls"
local socket = require "socket"

local loop = ... or "scheduler"
local F = "spec/fixtures/"
local ctx = assert(tls.new_context {
  mode = "server", certificate = F .. "server.pem", key = F .. "server.key",
  servername = function(name)
    if name == "bad.example" then error("servername callback: refusing " .. name) end
  end,
})

--- Echoes lines until the client goes. A callback failure raises (the
-- loop must isolate it).
local function handle(stream)
  local ok, message, code = stream:handshake()
  if not ok then
    stream:close()
    if code == "callback" then error("handshake: " .. message) end
    return
  end
  while true do
    local line = stream:receive()
    if not line or not stream:send(line .. "\n") then break end
  end
  stream:close()
end

-- For loops that do not abort a failed coroutine's stream themselves.
local function guarded(stream)
  return function()
    local ok, err = pcall(handle, stream)
    if not ok then
      stream:abort()
      io.stderr:write("client failed: ", tostring(err), "\n")
    end
  end
end

-- A server that goes quiet allocates nothing, so the collector would not
-- run, and glibc keeps the connections' freed memory for reuse: every half
-- second, collect and give it back (docs/coroutines.md, "Memory after a
-- burst"; what the spec's RSS check measures).
local function collect()
  tls.release_memory()
end

local listener = assert(socket.bind("127.0.0.1", 0, 2048))
local _, port = listener:getsockname()
io.stdout:write("ready ", port, "\n")
io.stdout:flush()

if loop == "scheduler" then
  local scheduler = require "lunatls.scheduler"
  local socket_transport = require "lunatls.transport.socket"
  local sched = scheduler.new { on_error = function(err)
    io.stderr:write("task failed: ", tostring(err):match("[^\n]*"), "\n")
  end }
  sched:spawn(function()
    while true do sched:sleep(0.5) collect() end
  end)
  sched:spawn(function()
    while true do -- accept backs off by itself when out of descriptors
      local transport, message = socket_transport.accept(listener)
      if not transport then
        io.stderr:write("accept stopped: ", message, "\n")
        return
      end
      sched:spawn(handle, tls.wrap(transport, ctx))
    end
  end)
  sched:run()
elseif loop == "cqueues" then
  local cqueues = require "cqueues"
  local cq_transport = require "lunatls.transport.cqueues"
  local cq = cqueues.new()
  cq:wrap(function()
    while true do cqueues.sleep(0.5) collect() end
  end)
  cq:wrap(function()
    while true do
      local transport = cq_transport.accept(listener)
      if transport then cq:wrap(guarded(tls.wrap(transport, ctx))) end
    end
  end)
  while true do
    local ok, err = cq:step()
    if not ok then io.stderr:write("cqueues: ", tostring(err), "\n") end
  end
elseif loop == "luv" then
  local uv = require("lunatls.scheduler").luv()
  local luv_transport = require "lunatls.transport.luv"
  local timer = uv.new_timer()
  timer:start(500, 500, collect)
  coroutine.wrap(function()
    while true do
      local transport = luv_transport.accept(listener)
      if transport then coroutine.wrap(guarded(tls.wrap(transport, ctx)))() end
    end
  end)()
  uv.run()
else
  error("unknown loop " .. tostring(loop))
end
