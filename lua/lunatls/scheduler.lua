--- A minimal select-based scheduler: many coroutines, each waiting on a
-- LuaSocket socket, on an event, or on a timer.
--
-- It is what the examples and the tests run on, and a model for plugging
-- lunatls into a real event loop (see docs/transports.md). It is not a
-- framework: spawn tasks, run them until all have finished.
--
--     local scheduler = require "lunatls.scheduler"
--     local sched = scheduler.new()
--     sched:spawn(function() ... end)
--     sched:run()
--
-- Transports do not talk to a scheduler object: they call the module
-- functions `wait_socket`, `wait_event`, `notify` and `sleep`, which find the
-- scheduler running the current coroutine. Outside one they block (sockets,
-- sleep) or yield a plain value to whoever resumed the coroutine (events).
--
-- Times are absolute, on `socket.gettime()`'s clock.
-- @module lunatls.scheduler

local socket = require "socket"

local gettime = socket.gettime
local select_sockets = socket.select
local coroutine_running, coroutine_yield = coroutine.running, coroutine.yield
local coroutine_resume, coroutine_status = coroutine.resume, coroutine.status

local M = {}

-- The scheduler owning each coroutine it runs (weak: a finished task goes).
local owner_of = setmetatable({}, { __mode = "k" })

-- What a task yields to ask its scheduler to wait; any other yielded value is
-- taken as "let the others run, then resume me".
local WAIT = setmetatable({}, { __name = "lunatls.scheduler.WAIT" })

-- Event keys: which tasks (in whichever scheduler) wait on each.
local event_waiters = setmetatable({}, { __mode = "k" })

local Scheduler = {}
Scheduler.__index = Scheduler

--- Creates a scheduler.
-- @treturn Scheduler
function M.new()
  return setmetatable({
    ready = {},   -- list of {co, ...values to resume with}
    waits = {},   -- co -> {socket =, what =, deadline =, event =}
    tasks = 0,    -- live tasks
  }, Scheduler)
end

--- The scheduler running the current coroutine, or nil.
function M.current()
  local co = coroutine_running()
  return owner_of[co]
end

--- Starts `fn(...)` as a new task; it first runs at the next turn of `run`.
-- @treturn thread the task's coroutine
function Scheduler:spawn(fn, ...)
  local co = coroutine.create(fn)
  owner_of[co] = self
  self.tasks = self.tasks + 1
  self.ready[#self.ready + 1] = { co, n = select("#", ...), ... }
  return co
end

-- Marks a waiting task ready, resuming it with the given values.
local function wake(self, co, ...)
  local wait = self.waits[co]
  if not wait then return end
  self.waits[co] = nil
  if wait.event then
    local list = event_waiters[wait.event]
    if list then list[co] = nil end
  end
  self.ready[#self.ready + 1] = { co, n = select("#", ...), ... }
end

-- Resumes one task; raises its error (with the task's traceback).
local function resume(self, entry)
  local co = entry[1]
  local ok, yielded = coroutine_resume(co, table.unpack(entry, 2, entry.n + 1))
  if not ok then
    self.tasks = self.tasks - 1
    if type(yielded) ~= "string" then error(yielded, 0) end -- an error object: as is
    error(debug.traceback(co, yielded), 0)
  end
  if coroutine_status(co) == "dead" then
    self.tasks = self.tasks - 1
  elseif yielded ~= WAIT then
    -- a plain coroutine.yield(): run again after the others
    self.ready[#self.ready + 1] = { co, n = 0 }
  end
end

-- Runs every task that is ready now (those woken meanwhile run next turn).
local function run_ready(self)
  local ready = self.ready
  self.ready = {}
  for i = 1, #ready do
    resume(self, ready[i])
  end
end

-- The select sets and the nearest deadline of the waiting tasks.
local function collect_waits(self)
  local readers, writers, seen_r, seen_w = {}, {}, {}, {}
  local nearest, sockets = nil, 0
  for co, wait in pairs(self.waits) do
    local sock = wait.socket
    if sock and sock:getfd() < 0 then
      -- closed under the task's feet: select would skip it and never wake
      -- the task, which rather finds out by trying again
      wake(self, co, true)
    elseif sock then
      sockets = sockets + 1
      if wait.what ~= "write" and not seen_r[sock] then
        seen_r[sock] = true
        readers[#readers + 1] = sock
      end
      if wait.what ~= "read" and not seen_w[sock] then
        seen_w[sock] = true
        writers[#writers + 1] = sock
      end
    end
    if wait.deadline and (not nearest or wait.deadline < nearest) then
      nearest = wait.deadline
    end
  end
  return readers, writers, nearest, sockets
end

-- Waits in select (or sleeps) until a socket is ready or a deadline passes,
-- then wakes the tasks concerned.
local function poll(self, limit)
  local readers, writers, nearest, sockets = collect_waits(self)
  if limit and (not nearest or limit < nearest) then nearest = limit end
  if #self.ready > 0 then nearest = gettime() end -- a task was woken: only look
  if sockets == 0 and not nearest then
    error("lunatls.scheduler: deadlock: every task waits on an event no one will signal", 0)
  end
  local timeout = nearest and math.max(0, nearest - gettime()) or nil
  local readable, writable = {}, {}
  if sockets > 0 then
    readable, writable = select_sockets(readers, writers, timeout)
  elseif timeout > 0 then
    socket.sleep(timeout)
  end
  local now = gettime()
  for co, wait in pairs(self.waits) do
    local sock = wait.socket
    if sock and ((wait.what ~= "write" and readable[sock]) or (wait.what ~= "read" and writable[sock])) then
      wake(self, co, true)
    elseif wait.deadline and wait.deadline <= now then
      wake(self, co, nil, "timeout")
    end
  end
end

--- Runs the tasks until all have finished. An error in a task stops the
-- run and is raised here, with the task's traceback.
-- @tparam[opt] number timeout give up after this many seconds: returns
-- `nil, "timeout"` (the unfinished tasks stay, and a later `run` continues them)
-- @return true, or nil, "timeout"
function Scheduler:run(timeout)
  local limit = timeout and gettime() + timeout
  while self.tasks > 0 do
    poll(self, limit) -- only looks, without waiting, when tasks are ready
    run_ready(self)
    if limit and gettime() >= limit and self.tasks > 0 then return nil, "timeout" end
  end
  return true
end

--- Number of tasks that have not finished.
function Scheduler:count()
  return self.tasks
end

-- Suspends the running task (which must belong to this scheduler) until it is
-- woken; returns what it was woken with.
local function suspend(self, wait)
  local co = coroutine_running()
  self.waits[co] = wait
  return coroutine_yield(WAIT)
end

--- Waits until `sock` (anything with `getfd()`) is ready for `what`.
-- @param sock a LuaSocket socket, or any object with `getfd()`
-- @tparam string what `"read"`, `"write"` or `"any"` (either)
-- @tparam[opt] number deadline absolute time
-- @return true, or nil, "timeout"
function Scheduler:wait_socket(sock, what, deadline)
  return suspend(self, { socket = sock, what = what, deadline = deadline })
end

--- Waits until `notify(key)` is called or the deadline passes.
-- @return true, or nil, "timeout"
function Scheduler:wait_event(key, deadline)
  local co = coroutine_running()
  local list = event_waiters[key]
  if not list then
    list = {}
    event_waiters[key] = list
  end
  list[co] = self
  return suspend(self, { event = key, deadline = deadline })
end

--- Sleeps `seconds`, letting the other tasks run.
function Scheduler:sleep(seconds)
  return suspend(self, { deadline = gettime() + seconds })
end

-- ---- module functions, for transports ----

-- A blocking wait in select, for code that runs outside any scheduler.
local function select_wait(sock, what, deadline)
  local timeout = deadline and math.max(0, deadline - gettime()) or nil
  local r = what ~= "write" and { sock } or nil
  local w = what ~= "read" and { sock } or nil
  local readable, writable = select_sockets(r, w, timeout)
  if (r and readable[sock]) or (w and writable[sock]) then return true end
  return nil, "timeout"
end

--- Waits until `sock` is ready for `what` (`"read"`, `"write"` or `"any"`):
-- yields to the current scheduler, or blocks in `socket.select` when there is
-- none.
-- @return true, or nil, "timeout"
function M.wait_socket(sock, what, deadline)
  local sched = M.current()
  if sched then return sched:wait_socket(sock, what, deadline) end
  return select_wait(sock, what, deadline)
end

--- Waits until `notify(key)`. In a scheduler's task: yields to it. In another
-- coroutine: yields `("event", key)` to whoever resumes it, and returns true
-- when resumed. Outside any coroutine nothing could ever notify: raises.
-- @return true, or nil, "timeout"
function M.wait_event(key, deadline)
  local sched = M.current()
  if sched then return sched:wait_event(key, deadline) end
  local _, main = coroutine_running()
  if main then
    error("lunatls.scheduler: waiting on an event outside any coroutine would block forever", 2)
  end
  coroutine_yield("event", key)
  if deadline and gettime() >= deadline then return nil, "timeout" end
  return true
end

--- Wakes every task waiting on `key` (in any scheduler).
function M.notify(key)
  local list = event_waiters[key]
  if not list then return end
  event_waiters[key] = nil
  for co, sched in pairs(list) do
    wake(sched, co, true)
  end
end

--- Lets the other tasks run once, then returns (in a scheduler's task);
-- elsewhere does nothing.
function M.pause()
  if M.current() then coroutine_yield() end
end

--- Sleeps `seconds`: in a scheduler's task lets the others run; elsewhere
-- blocks.
function M.sleep(seconds)
  local sched = M.current()
  if sched then return sched:sleep(seconds) end
  socket.sleep(seconds)
end

--- The clock deadlines use (`socket.gettime`).
M.gettime = gettime

return M
