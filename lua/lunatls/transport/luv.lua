--- libuv transport: a LuaSocket TCP socket whose waits go through luv's
-- loop (`uv.run()`), for programs built on luv. The stream's coroutine
-- yields in `wait`; a poll handle's callback (or a timer, for the deadline)
-- resumes it.
--
--     local uv = require "luv"
--     local luv_transport = require "lunatls.transport.luv"
--     coroutine.wrap(function()
--       local stream = tls.wrap(luv_transport.new(sock), ctx, { server_name = "localhost" })
--       assert(stream:handshake())
--       ...
--     end)()
--     uv.run()
--
-- libuv allows one poll handle per descriptor: the transport keeps one for
-- all the coroutines waiting on it, and stops and closes it before the
-- socket is closed (closing a descriptor under an active handle is what
-- made the old recipe abort in `uv_poll_stop`).
-- A coroutine resumed by the loop that raises is reported to `on_error`
-- (default: stderr) and the loop goes on.
-- @module lunatls.transport.luv

local socket = require "socket"
local scheduler = require "lunatls.scheduler"
local socket_transport = require "lunatls.transport.socket"
local fd_transport = require "lunatls.transport.fd"

local uv = assert(scheduler.luv())
local close_handle = scheduler.close_handle
local gettime = socket.gettime

local M = {}

--- Called with (error with traceback, coroutine) when a coroutine resumed
-- by the loop raises. Replace it to log elsewhere.
function M.on_error(err)
  io.stderr:write("lunatls.transport.luv: a coroutine failed: ", tostring(err), "\n")
end

local function resume(co, ...)
  if coroutine.status(co) ~= "suspended" then return end
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    if type(err) == "string" then err = debug.traceback(co, err) end
    M.on_error(err, co)
  end
end

local Poller = {}
Poller.__index = Poller

local function new_poller(fd)
  return setmetatable({ fd = fd, handle = nil, events = "", waiting = {}, closed = false }, Poller)
end

local FLAGS = { read = "r", write = "w", any = "[rw]" }

-- Starts or stops the poll handle for what the waiting coroutines want.
function Poller:update()
  if self.closed then return end
  local r, w = false, false
  for _, what in pairs(self.waiting) do
    if what ~= "write" then r = true end
    if what ~= "read" then w = true end
  end
  local events = (r and "r" or "") .. (w and "w" or "")
  if events == self.events then return end
  self.events = events
  if events == "" then return self.handle:stop() end
  self.handle = self.handle or uv.new_socket_poll(self.fd)
  self.handle:start(events, function(err, ready)
    local woken = {}
    for co, what in pairs(self.waiting) do
      if err or (ready or ""):find(FLAGS[what]) then woken[#woken + 1] = co end
    end
    for _, co in ipairs(woken) do
      if self.waiting[co] then
        self.waiting[co] = nil
        resume(co, true)
      end
    end
    self:update()
  end)
end

--- Starts `timer` to call `fn` once, `seconds` from now. libuv counts
-- from the time it cached at its last loop iteration: after long Lua work
-- outside `uv.run` (or a luv loaded long before its first run) that time
-- is stale, and a timer started from it fired at once (a 10 s wait timed
-- out at its start). Reading the clock first makes `seconds` mean now.
local function start_timer(timer, seconds, fn)
  uv.update_time()
  timer:start(math.max(0, math.ceil(seconds * 1000)), 0, fn)
end

--- Suspends the running coroutine until the descriptor is ready for
-- `what` or the deadline passes.
function Poller:wait(what, deadline)
  local co, main = coroutine.running()
  if main then error("lunatls.transport.luv: wait must run in a coroutine", 3) end
  if self.closed then return true end
  self.waiting[co] = what
  self:update()
  local timer
  if deadline then
    timer = uv.new_timer()
    start_timer(timer, deadline - gettime(), function()
      if self.waiting[co] then
        self.waiting[co] = nil
        self:update()
        resume(co, nil, "timeout")
      end
    end)
  end
  local ok, err = coroutine.yield()
  if timer then close_handle(timer) end
  return ok, err
end

--- Stops and closes the handle (before the descriptor goes), waking the
-- waiting coroutines (they find the stream closed).
function Poller:close()
  if self.closed then return end
  self.closed = true
  if self.handle then
    self.handle:stop()
    close_handle(self.handle)
  end
  local waiting = self.waiting
  self.waiting = {}
  for co in pairs(waiting) do
    local timer = uv.new_timer() -- resumed from the loop, not from inside close
    timer:start(0, 0, function() close_handle(timer) resume(co, true) end)
  end
end

-- Sleeps `seconds` in the loop.
local function sleep(seconds)
  local co = coroutine.running()
  local timer = uv.new_timer()
  start_timer(timer, seconds, function() close_handle(timer) resume(co) end)
  coroutine.yield()
end
M.sleep = sleep

-- Listeners' pollers (a listener must be closed with `close_listener`).
local listener_pollers = setmetatable({}, { __mode = "k" })

--- Accepts one client of a LuaSocket listener, waiting in the loop; out of
-- descriptors it backs off and tries again.
-- @return a transport, or nil, message, code
function M.accept(listener, deadline)
  local poller = listener_pollers[listener]
  if not poller then
    poller = new_poller(listener:getfd())
    listener_pollers[listener] = poller
  end
  local transport, message, code = socket_transport.accept(listener, deadline,
    function(_, what, until_time) return poller:wait(what, until_time) end, sleep)
  if not transport then return nil, message, code end
  return M.new(transport.socket)
end

--- Closes a listener `accept` waited on: its poll handle first.
function M.close_listener(listener)
  local poller = listener_pollers[listener]
  if poller then poller:close() end
  listener:close()
end

--- Wraps a connected LuaSocket TCP socket.
-- @return a transport for `tls.wrap`: the fd transport's (OpenSSL on the
-- descriptor), or the socket transport's when LuaSocket holds bytes read
-- ahead (`lunatls.transport.fd.fastest`); waits, pauses and close through
-- libuv
function M.new(sock)
  if type(sock) ~= "userdata" or not sock.getfd then
    error("bad argument #1 to 'new' (a connected LuaSocket TCP socket expected, got "
          .. type(sock) .. ")", 2)
  end
  local poller = new_poller(sock:getfd())
  local transport = fd_transport.fastest(sock, function(_, what, deadline)
    return poller:wait(what, deadline)
  end)
  transport.poller = poller
  --- Lets the loop run once (fairness), then resumes.
  function transport.pause() sleep(0) end
  function transport.close(self)
    poller:close()
    self.socket:close()
  end
  return transport
end

return M
