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
-- Three backends wait for the sockets: `"epoll"` (lunatls's own Poller on
-- the kernel's epoll: no descriptor limit, one system call per wait; the
-- default on Linux), `"luv"` (libuv's epoll: the default elsewhere when
-- `luv` is installed) and `"select"` (LuaSocket's select, which cannot
-- watch a descriptor >= FD_SETSIZE (1024): such a wait fails with
-- `nil, "descriptor too large for select", "limit"`, and only that
-- connection fails).
--
-- A task that raises does not stop the others: its error (with the task's
-- traceback) goes to `on_error` (default: written to stderr), the streams it
-- used are aborted, and the run goes on; `run` then returns `nil, first
-- error` once every task has finished.
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

-- Event keys: the task (in whichever scheduler) waiting on each, or a set of
-- them when several do (one waiter, the common case, costs no table).
local event_waiters = setmetatable({}, { __mode = "k" })

-- The values a ready task is resumed with, packed (`n`: how many); the two
-- common packs are shared, so that a wake or a pause makes no table.
local RESUME_NOTHING = { n = 0 }
local RESUME_TRUE = { true, n = 1 }

local function pack_resume(...)
  local n = select("#", ...)
  if n == 0 then return RESUME_NOTHING end
  if n == 1 and ... == true then return RESUME_TRUE end
  return { n = n, ... }
end

local Scheduler = {}
Scheduler.__index = Scheduler

local WEAK_KEYS = { __mode = "k" }

-- What a task's streams are (weak both ways): aborted when the task raises.
local owned = setmetatable({}, WEAK_KEYS)

local function report_to_stderr(err)
  io.stderr:write("lunatls.scheduler: a task failed: ", tostring(err), "\n")
end

local backends = {}

--- Creates a scheduler.
-- @tparam[opt] table opts `backend` (`"epoll"`, `"luv"` or `"select"`;
-- default: `default_backend()`), `on_error` (`function(err, co)`, called when a task
-- raises; default: write it to stderr)
-- @treturn Scheduler
function M.new(opts)
  opts = opts or {}
  local name = opts.backend or M.default_backend()
  local backend = backends[name]
  if not backend then error("scheduler.new: unknown backend '" .. tostring(name) .. "'", 2) end
  local self = setmetatable({
    ready = {},   -- co, values (pack_resume), co, values, ...: who runs next turn
                  -- (appended inline in spawn, wake and resume: a function for it
                  -- cost ~1.7 K instructions per stream handshake pair, callgrind)
    spare = {},   -- the list run_ready emptied last: the next turn's
    waits = {},   -- co -> {socket =, what =, deadline =, event =, co =, live =}: `co`
                  -- and `live` (the deadline heap's, add_deadline) made with the
                  -- table, so that setting them later adds no key
    tasks = 0,    -- live tasks
    on_error = opts.on_error or report_to_stderr,
    first_error = nil, -- the first task error, for run's result
    limit = nil,  -- while run(timeout) runs: when it gives up
    backend = nil,
  }, Scheduler)
  self.backend = backend.new(self)
  return self
end

-- The luv module, loaded once per Lua state and kept in the registry: luv
-- 1.44 crashes when a second copy of the module (after package.loaded was
-- reset, as busted does between files) is collected.
local LUV_KEY = "lunatls.luv"

--- The luv module (kept loaded for the life of the Lua state), or nil, err.
function M.luv()
  local registry = debug.getregistry()
  local uv = registry[LUV_KEY]
  if uv then return uv end
  local ok, loaded = pcall(require, "luv")
  if not ok then return nil, loaded end
  registry[LUV_KEY] = loaded
  return loaded
end

-- luv handles being closed, kept reachable until libuv has finished
-- closing them: luv 1.44 frees a collected handle at once, even one libuv
-- still holds in its closing queue (under an aggressive collector that
-- corrupted the loop's timers).
local closing = {} -- luacheck: ignore (its references are the point)

--- Closes a luv handle, keeping it alive until libuv is done with it.
function M.close_handle(handle)
  if handle:is_closing() then return end
  closing[handle] = true
  handle:close(function() closing[handle] = nil end)
end

-- Does this system have epoll (lunatls.core's Poller)? Asked once.
local has_epoll
local function epoll_available()
  if has_epoll == nil then
    local poller, _, code = require("lunatls.core").new_poller()
    has_epoll = code ~= "unsupported"
    if poller then poller:close() end
  end
  return has_epoll
end

--- The backend `new` uses when none is asked for: `"epoll"` on Linux,
-- else `"luv"` when the luv module loads, else `"select"`.
-- `LUNATLS_BACKEND=select` (or `luv`, `epoll`) in the environment, or
-- setting `scheduler.DEFAULT_BACKEND`, overrides it.
M.DEFAULT_BACKEND = nil

function M.default_backend()
  if M.DEFAULT_BACKEND then return M.DEFAULT_BACKEND end
  local chosen = os.getenv("LUNATLS_BACKEND")
  if chosen and chosen ~= "" then return chosen end
  if epoll_available() then return "epoll" end
  return M.luv() and "luv" or "select"
end

--- Registers `resource` (anything with `abort` or `close`) as used by the
-- running task: if the task raises, the scheduler aborts it. Streams call
-- this themselves. Outside a task: nothing.
function M.own(resource)
  local co = coroutine_running()
  if not owner_of[co] then return end
  local list = owned[co]
  if list then
    list[resource] = true
  else -- made with its first key: no growing from empty
    owned[co] = setmetatable({ [resource] = true }, WEAK_KEYS)
  end
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
  local ready = self.ready
  local k = #ready
  ready[k + 1], ready[k + 2] = co, pack_resume(...)
  return co
end

-- Marks a waiting task ready, resuming it with the given values.
local function wake(self, co, ...)
  local wait = self.waits[co]
  if not wait then return end
  self.waits[co] = nil
  self.backend:forget(co, wait)
  local event = wait.event
  if event then
    local waiting = event_waiters[event]
    if waiting == co then
      event_waiters[event] = nil
    elseif type(waiting) == "table" then
      waiting[co] = nil
    end
  end
  local ready = self.ready
  local k = #ready
  ready[k + 1], ready[k + 2] = co, pack_resume(...)
end

-- A task raised: report, abort what it used, go on.
local function task_failed(self, co, err)
  if type(err) == "string" then err = debug.traceback(co, err) end -- objects: as they are
  if self.first_error == nil then self.first_error = err end
  local list = owned[co]
  owned[co] = nil
  for resource in pairs(list or {}) do
    pcall(resource.abort or resource.close, resource)
  end
  local ok, report_err = pcall(self.on_error, err, co)
  if not ok then report_to_stderr(report_err) end
end

-- Resumes one task with `values` (pack_resume); a task that raises is
-- reported (task_failed).
local function resume(self, co, values)
  local ok, yielded
  if values == RESUME_TRUE then
    ok, yielded = coroutine_resume(co, true)
  else
    ok, yielded = coroutine_resume(co, table.unpack(values, 1, values.n))
  end
  if not ok then
    self.tasks = self.tasks - 1
    return task_failed(self, co, yielded)
  end
  if coroutine_status(co) == "dead" then
    self.tasks = self.tasks - 1
  elseif yielded ~= WAIT then
    -- a plain coroutine.yield(): run again after the others
    local ready = self.ready
    local k = #ready
    ready[k + 1], ready[k + 2] = co, RESUME_NOTHING
  end
end

-- Runs every task that is ready now (those woken meanwhile run next turn).
local function run_ready(self)
  local ready = self.ready
  self.ready = self.spare
  local n = #ready
  for i = 1, n, 2 do
    resume(self, ready[i], ready[i + 1])
  end
  for i = n, 1, -1 do ready[i] = nil end -- emptied for reuse: no table per turn
  self.spare = ready
end

-- ---- backend: select ----

local SelectBackend = {}
SelectBackend.__index = SelectBackend

-- Descriptors select can watch: below FD_SETSIZE.
local FD_SETSIZE = 1024

function SelectBackend.new(sched)
  return setmetatable({ sched = sched }, SelectBackend)
end

function SelectBackend.watch() end
function SelectBackend.forget() end

-- The select sets and the nearest deadline of the waiting tasks.
local function collect_waits(self)
  local readers, writers, seen_r, seen_w = {}, {}, {}, {}
  local nearest, sockets = nil, 0
  for co, wait in pairs(self.waits) do
    local sock = wait.socket
    local fd = sock and sock:getfd()
    if sock and fd < 0 then
      -- closed under the task's feet: select would skip it and never wake
      -- the task, which rather finds out by trying again
      wake(self, co, true)
    elseif sock and fd >= FD_SETSIZE then
      wake(self, co, nil, "descriptor too large for select", "limit")
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
function SelectBackend:poll(limit)
  self = self.sched
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

-- ---- backend: luv (libuv: epoll, no FD_SETSIZE limit) ----

-- libuv allows one poll handle per descriptor: a handle exists while some
-- task waits on its socket, and is closed as soon as none does (so a
-- descriptor closed and reused never meets a stale handle). Deadlines are
-- a heap under one libuv timer. Callbacks only mark tasks ready; tasks run
-- outside uv.run.

local LuvBackend = {}
LuvBackend.__index = LuvBackend

-- How often waits on sockets closed under a task are looked for (seconds).
local CLOSED_SCAN = 0.5
-- While tasks are ready to run, how often the sockets are looked at.
local LOOK_EVERY = 0.001

function LuvBackend.new(sched)
  local uv = M.luv()
  return setmetatable({
    sched = sched, uv = uv,
    polls = {},        -- socket -> { handle =, fd =, events =, waiting = {co -> what} }
    by_fd = {},        -- fd -> the same entry
    timers = 0,        -- live deadlines
    heap = {},         -- deadlines (see add_deadline)
    tick = nil,        -- the timer bounding one uv.run (while running)
    fresh = {},        -- entries started or changed since the last uv.run
    fresh_spare = {},  -- the list check_fresh emptied last
    looked = 0,        -- when uv.run last looked without waiting
    scanned = gettime(),
  }, LuvBackend)
end

local WANTS = { read = "r", write = "w", any = "rw" }

-- Does libuv's `ready` ("r", "w", "rw", ...) answer a wait for `what`?
local function ready_for(ready, what)
  return (ready or ""):find(WANTS[what] == "rw" and "[rw]" or WANTS[what]) ~= nil
end

local function do_nothing() end

local drop

local function close_entry(self, entry)
  self.polls[entry.socket], self.by_fd[entry.fd] = nil, nil
  M.close_handle(entry.handle)
end

-- Starts, changes or closes an entry's handle for what its waiters want.
local function update(self, entry)
  if entry.socket:getfd() ~= entry.fd then return drop(self, entry) end
  local r, w = false, false
  for _, what in pairs(entry.waiting) do
    if what ~= "write" then r = true end
    if what ~= "read" then w = true end
  end
  local events = (r and "r" or "") .. (w and "w" or "")
  if events == "" then return close_entry(self, entry) end
  if events == entry.events then return end
  entry.events = events
  -- libuv tells epoll at its next run, and aborts if the descriptor is
  -- closed by then: poll() looks at these entries first
  self.fresh[#self.fresh + 1] = entry
  entry.handle:start(events, function(err, ready)
    -- one waiter, the common case: no list (waking it changes entry.waiting)
    local co, what = next(entry.waiting)
    if co and next(entry.waiting, co) == nil then
      if err or ready_for(ready, what) then wake(self.sched, co, true) end
      return
    end
    local woken = {}
    for waiter, wanted in pairs(entry.waiting) do
      if err or ready_for(ready, wanted) then woken[#woken + 1] = waiter end
    end
    for _, waiter in ipairs(woken) do wake(self.sched, waiter, true) end
  end)
end

-- Wakes every task waiting on the entry (its socket went away).
function drop(self, entry)
  local waiting = {}
  for co in pairs(entry.waiting) do waiting[#waiting + 1] = co end
  for _, co in ipairs(waiting) do wake(self.sched, co, true) end
  if self.polls[entry.socket] == entry then close_entry(self, entry) end
end

local function entry_for(self, sock, fd)
  local entry = self.polls[sock]
  if entry and entry.fd == fd then return entry end
  if entry then drop(self, entry) end
  local stale = self.by_fd[fd] -- another socket had this descriptor: closed since
  if stale then drop(self, stale) end
  local ok, handle = pcall(self.uv.new_socket_poll, fd)
  if not ok or not handle then return nil, tostring(handle) end
  entry = { handle = handle, fd = fd, socket = sock, events = "", waiting = {} }
  self.polls[sock], self.by_fd[fd] = entry, entry
  return entry
end

-- Deadlines: a binary min-heap of { deadline, co, live }, one libuv timer
-- for the nearest (a timer per wait costs three luv calls per wait). A
-- wait that ends first is marked dead and dropped when it reaches the top,
-- or when dead entries outnumber live ones (the heap is rebuilt).

local function heap_push(heap, item)
  local i = #heap + 1
  while i > 1 do
    local parent = i // 2
    if heap[parent].deadline <= item.deadline then break end
    heap[i] = heap[parent]
    i = parent
  end
  heap[i] = item
end

local function heap_pop(heap)
  local top, n = heap[1], #heap
  local last = heap[n]
  heap[n] = nil
  n = n - 1
  if n == 0 then return top end
  local i = 1
  while true do
    local child = 2 * i
    if child > n then break end
    if child < n and heap[child + 1].deadline < heap[child].deadline then child = child + 1 end
    if last.deadline <= heap[child].deadline then break end
    heap[i] = heap[child]
    i = child
  end
  heap[i] = last
  return top
end

-- The wait itself is the heap's entry (no table of its own per wait):
-- `co`, and `live` until the wait ends.
local function add_deadline(self, co, wait)
  local item = wait
  item.co, item.live = co, true
  self.timers = self.timers + 1
  local heap = self.heap
  if #heap > 2 * self.timers + 1024 then -- mostly dead: rebuild
    local live = {}
    for _, entry in ipairs(heap) do
      if entry.live then live[#live + 1] = entry end
    end
    heap = {}
    for _, entry in ipairs(live) do heap_push(heap, entry) end
    self.heap = heap
  end
  heap_push(heap, item)
end

-- Wakes the tasks whose deadline has passed by `now` (the caller's
-- gettime(): one clock reading per poll serves every check in it); returns
-- the nearest deadline still ahead, or nil.
local function expire(self, now)
  local heap = self.heap
  while heap[1] do
    local top = heap[1]
    if top.live and top.deadline > now then return top.deadline end
    heap_pop(heap)
    if top.live then wake(self.sched, top.co, nil, "timeout") end
  end
  return nil
end

-- The wait ended: its deadline, if any, no longer counts (the heap drops it
-- later).
local function end_deadline(self, wait)
  if wait.live then
    wait.live = false
    self.timers = self.timers - 1
  end
end

-- What the luv and epoll backends' watch do first: the wait's deadline into
-- the heap; then the descriptor to watch, or nil (no socket; or a closed
-- one, whose task is woken to find out by trying).
local function descriptor_to_watch(self, co, wait)
  if wait.deadline then add_deadline(self, co, wait) end
  local sock = wait.socket
  if not sock then return nil end
  local fd = sock:getfd()
  if fd < 0 then
    wake(self.sched, co, true)
    return nil
  end
  return fd
end

-- How long the luv and epoll backends' poll may wait (seconds) from `now`,
-- given the nearest deadline: at most CLOSED_SCAN (the closed-socket scan)
-- and the run's limit. `watching`: some task waits on a socket; without
-- that, a deadline or a limit, nothing could ever wake the tasks.
local function wait_seconds(self, limit, nearest, watching, now)
  if not watching and self.timers == 0 and not limit then
    error("lunatls.scheduler: deadlock: every task waits on an event no one will signal", 0)
  end
  local wait = CLOSED_SCAN
  if limit then wait = math.min(wait, math.max(0, limit - now)) end
  if nearest then wait = math.min(wait, math.max(0, nearest - now)) end
  return wait
end

function LuvBackend:watch(co, wait)
  local fd = descriptor_to_watch(self, co, wait)
  if not fd then return end
  local entry, err = entry_for(self, wait.socket, fd)
  if not entry then return wake(self.sched, co, nil, "poll: " .. err, "syscall") end
  entry.waiting[co] = wait.what
  update(self, entry)
end

function LuvBackend:forget(co, wait)
  end_deadline(self, wait)
  local entry = wait.socket and self.polls[wait.socket]
  if entry and entry.waiting[co] then
    entry.waiting[co] = nil
    update(self, entry)
  end
end

-- Wakes the tasks waiting on sockets that were closed under them (libuv
-- would never report those).
local function scan_closed(self, now)
  self.scanned = now
  local closed = {}
  for sock, entry in pairs(self.polls) do
    if sock:getfd() ~= entry.fd then closed[#closed + 1] = entry end
  end
  for _, entry in ipairs(closed) do drop(self, entry) end
end

-- Entries started or changed since the last uv.run: libuv tells epoll
-- about them at its next run, and aborts if a descriptor is closed by then.
-- Runs right before every uv.run.
local function check_fresh(self)
  local fresh = self.fresh
  local n = #fresh
  if n == 0 then return end
  -- entries that drop starts go into the other list; this one is emptied
  -- for reuse (no table per look)
  self.fresh, self.fresh_spare = self.fresh_spare, fresh
  for i = 1, n do
    local entry = fresh[i]
    if self.polls[entry.socket] == entry and entry.socket:getfd() ~= entry.fd then drop(self, entry) end
  end
  for i = n, 1, -1 do fresh[i] = nil end
end

function LuvBackend:poll(limit)
  local sched, uv = self.sched, self.uv
  local now = gettime()
  if now - self.scanned >= CLOSED_SCAN then scan_closed(self, now) end
  if #sched.ready > 0 then
    -- tasks are ready: look at the sockets without waiting, at most every
    -- LOOK_EVERY seconds (each look is a system call)
    if now - self.looked >= LOOK_EVERY then
      self.looked = now
      check_fresh(self)
      uv.run("nowait")
    end
    expire(self, now)
    return
  end
  check_fresh(self)
  local nearest = expire(self, now)
  if #sched.ready > 0 then return end -- woken by the checks: no waiting
  local wait = wait_seconds(self, limit, nearest, next(self.polls) ~= nil, now)
  local ms = math.max(1, math.ceil(wait * 1000))
  self.tick = self.tick or uv.new_timer()
  -- The timer repeats: uv.run("once") runs the timers that are due before
  -- it polls, then polls without a time limit if none is left. A one-shot
  -- timer already due (its wait over, or the loop's clock stale after long
  -- Lua work: valgrind, gcstress) fired there and left the poll waiting for
  -- I/O that might never come; a repeating one is armed again first.
  uv.update_time()
  if not self.tick:start(ms, ms, do_nothing) then
    -- an unusable timer would let uv.run wait forever: take a new one
    self.tick = uv.new_timer()
    self.tick:start(ms, ms, do_nothing)
  end
  self.looked = now
  uv.run("once")
  self.tick:stop()
  expire(self, gettime())
end

-- The run is over: close the timer (a handle left open would outlive the
-- loop at exit).
function LuvBackend:finish()
  if self.tick then
    M.close_handle(self.tick)
    self.tick = nil
    self.uv.run("nowait") -- lets libuv finish closing
  end
end

function SelectBackend.finish() end

-- ---- backend: epoll (lunatls.core's Poller; Linux) ----

-- The kernel's readiness queue, without libuv's handles and callbacks: a
-- wait arms its descriptor once (a one-shot registration, left in place
-- afterwards: no call to take it out), and a report marks its task ready.
-- What waits on a descriptor is kept by its number (tables whose keys are
-- small integers: no table per wait). Deadlines share the luv backend's
-- heap. A backend holds a poller while tasks may wait on sockets: `finish`
-- lets it go at the end of a run that left no such wait, to the next run
-- of any scheduler (idle_poller).

local EpollBackend = {}
EpollBackend.__index = EpollBackend

-- The poller the last finished run let go, kept for the next run that
-- waits on a socket: a program that runs a scheduler per task (a client
-- per request, the benchmark's handshakes) would otherwise make and close
-- an epoll descriptor per run (~6.7 K instructions per TCP handshake
-- pair). At most one: a second one let go is closed. Its registrations
-- may be a finished run's: harmless, as a descriptor nobody waits on is
-- armed afresh when waited on, and a report nobody waits for is ignored.
local idle_poller = nil

local function take_poller()
  local poller = idle_poller
  idle_poller = nil
  if poller then return poller end
  return require("lunatls.core").new_poller()
end

local function let_go(poller)
  if idle_poller then
    poller:close()
  else
    idle_poller = poller
  end
end

-- Readiness bits (src/poller.c): what each kind of wait asks for.
local BITS = { read = 1, write = 2, any = 3 }

function EpollBackend.new(sched)
  return setmetatable({
    sched = sched,
    poller = nil,      -- made by the first wait on a socket
    waiter = {},       -- fd -> the task waiting on it, or a set of them (several)
    socket = {},       -- fd -> the socket those tasks wait on
    armed = {},        -- fd -> the bits it is armed for (0: reported since); read
                       -- only while fd has waiters (the poller may change between runs)
    timers = 0,        -- live deadlines
    heap = {},         -- deadlines (add_deadline)
    reports = {},      -- poller:wait's output, reused
    looked = 0,
    scanned = gettime(),
  }, EpollBackend)
end

-- Wakes every task waiting on fd (its socket went away, or failed).
local function drop_fd(self, fd, ...)
  local waiter = self.waiter[fd]
  self.waiter[fd], self.socket[fd] = nil, nil
  if type(waiter) == "thread" then return wake(self.sched, waiter, ...) end
  local list = {}
  for co in pairs(waiter or {}) do list[#list + 1] = co end
  for _, co in ipairs(list) do wake(self.sched, co, ...) end
end

-- Arms fd for `bits` (once); a descriptor closed under its waiters wakes
-- them, to find out by trying.
local function arm(self, fd, bits)
  local armed = self.armed
  local ok, err, code = self.poller:set(fd, bits, armed[fd] ~= nil)
  if not ok then
    if code == "closed" then return drop_fd(self, fd, true) end
    return drop_fd(self, fd, nil, "poll: " .. err, code)
  end
  armed[fd] = bits
end

-- The bits the tasks waiting on fd want.
local function wanted_bits(self, fd)
  local waiter, waits = self.waiter[fd], self.sched.waits
  if type(waiter) == "thread" then return BITS[waits[waiter].what] end
  local bits = 0
  for co in pairs(waiter) do bits = bits | BITS[waits[co].what] end
  return bits
end

function EpollBackend:watch(co, wait)
  local fd = descriptor_to_watch(self, co, wait)
  if not fd then return end
  if not self.poller then
    local poller, err = take_poller()
    if not poller then return wake(self.sched, co, nil, "poll: " .. err, "syscall") end
    self.poller = poller
  end
  local sock = wait.socket
  local socket_of = self.socket
  local other = socket_of[fd]
  if other and other ~= sock then drop_fd(self, fd, true) end -- closed since: its number reused
  wait.fd = fd
  local waiter = self.waiter[fd]
  if waiter == nil then
    self.waiter[fd], socket_of[fd] = co, sock
  elseif type(waiter) == "thread" then
    self.waiter[fd] = { [waiter] = true, [co] = true }
  else
    waiter[co] = true
  end
  -- armed counts only while fd has other waiters: before, it may be a
  -- closed socket's registration, which the kernel dropped with it
  local armed = waiter and self.armed[fd] or 0
  local bits = armed | BITS[wait.what]
  if bits ~= armed then arm(self, fd, bits) end
end

-- A wait that ended leaves its descriptor armed: a report no one waits for
-- comes at most once, and is ignored.
function EpollBackend:forget(co, wait)
  end_deadline(self, wait)
  local fd = wait.fd
  if not fd then return end
  local waiter = self.waiter[fd]
  if waiter == co then
    self.waiter[fd], self.socket[fd] = nil, nil
  elseif type(waiter) == "table" and waiter[co] then
    waiter[co] = nil
    local first = next(waiter)
    if next(waiter, first) == nil then self.waiter[fd] = first end -- one left
  end
end

-- A report: fd's registration is silent now. Wakes the waiters it answers,
-- and arms fd again for those it does not.
local function reported(self, fd, ready)
  self.armed[fd] = 0
  local waiter = self.waiter[fd]
  if waiter == nil then return end
  local sched = self.sched
  if type(waiter) == "thread" then -- one waiter, the common case: no list
    local bits = BITS[sched.waits[waiter].what]
    if ready & bits ~= 0 then return wake(sched, waiter, true) end
    return arm(self, fd, bits)
  end
  local woken = {}
  for co in pairs(waiter) do
    if ready & BITS[sched.waits[co].what] ~= 0 then woken[#woken + 1] = co end
  end
  for _, co in ipairs(woken) do wake(sched, co, true) end
  if self.waiter[fd] then arm(self, fd, wanted_bits(self, fd)) end
end

-- Wakes the tasks waiting on sockets that were closed under them (the
-- kernel takes a closed descriptor out of the set without a word).
local function epoll_scan_closed(self, now)
  self.scanned = now
  local closed = {}
  for fd, sock in pairs(self.socket) do
    if sock:getfd() ~= fd then closed[#closed + 1] = fd end
  end
  for _, fd in ipairs(closed) do drop_fd(self, fd, true) end
end

-- How long poll may wait (milliseconds) from `now`, or nil when it must
-- not wait.
local function epoll_timeout(self, limit, now)
  local sched = self.sched
  local nearest = expire(self, now)
  if #sched.ready > 0 then return nil end -- woken by the deadlines: no waiting
  return math.ceil(wait_seconds(self, limit, nearest, next(self.socket) ~= nil, now) * 1000)
end

function EpollBackend:poll(limit)
  local now = gettime()
  if now - self.scanned >= CLOSED_SCAN then epoll_scan_closed(self, now) end
  local ms = 0
  if #self.sched.ready > 0 then
    -- tasks are ready: look without waiting, at most every LOOK_EVERY seconds
    if now - self.looked < LOOK_EVERY or not self.poller then return expire(self, now) end
  else
    ms = epoll_timeout(self, limit, now)
    if not ms then return end
  end
  self.looked = now
  local n = 0
  if self.poller then
    local err, code
    n, err, code = self.poller:wait(ms, self.reports)
    if not n then error("lunatls.scheduler: " .. err .. " (" .. code .. ")", 0) end
  elseif ms > 0 then
    socket.sleep(ms / 1000)
  end
  local reports = self.reports
  for i = 1, 2 * n, 2 do reported(self, reports[i], reports[i + 1]) end
  expire(self, ms > 0 and gettime() or now) -- a wait took time; a look did not
end

-- The run is over: unless tasks still wait on sockets (a run that timed
-- out, to be continued by the next), the poller goes to the next run.
function EpollBackend:finish()
  if self.poller and next(self.socket) == nil then
    let_go(self.poller)
    self.poller = nil
  end
end

backends.select = SelectBackend
backends.luv = LuvBackend
backends.epoll = EpollBackend

--- Runs the tasks until all have finished. A task that raises is reported
-- to `on_error` and the others go on.
-- @tparam[opt] number timeout give up after this many seconds: returns
-- `nil, "timeout"` (the unfinished tasks stay, and a later `run` continues them)
-- @return true; or nil, "timeout"; or nil, err: the first task error
-- (after every task has finished)
function Scheduler:run(timeout)
  local limit = timeout and gettime() + timeout
  self.limit = limit -- a pause then always yields, so that the limit is kept (M.pause)
  while self.tasks > 0 do
    self.backend:poll(limit) -- only looks, without waiting, when tasks are ready
    run_ready(self)
    if limit and gettime() >= limit and self.tasks > 0 then
      self.backend:finish()
      self.limit = nil
      return nil, "timeout"
    end
  end
  self.limit = nil
  self.backend:finish()
  if self.first_error ~= nil then
    local err = self.first_error
    self.first_error = nil
    return nil, err
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
  self.backend:watch(co, wait)
  return coroutine_yield(WAIT)
end

--- Waits until `sock` (anything with `getfd()`) is ready for `what`.
-- @param sock a LuaSocket socket, or any object with `getfd()`
-- @tparam string what `"read"`, `"write"` or `"any"` (either)
-- @tparam[opt] number deadline absolute time
-- @return true, or nil, "timeout"
function Scheduler:wait_socket(sock, what, deadline)
  return suspend(self, { socket = sock, what = what, deadline = deadline, co = false, live = false,
                         fd = false })
end

--- Waits until `notify(key)` is called or the deadline passes.
-- @return true, or nil, "timeout"
function Scheduler:wait_event(key, deadline)
  local co = coroutine_running()
  local waiting = event_waiters[key]
  if waiting == nil then
    event_waiters[key] = co
  elseif type(waiting) == "thread" then
    if waiting ~= co then event_waiters[key] = { [waiting] = true, [co] = true } end
  else
    waiting[co] = true
  end
  return suspend(self, { event = key, deadline = deadline, co = false, live = false })
end

--- Sleeps `seconds`, letting the other tasks run.
function Scheduler:sleep(seconds)
  return suspend(self, { deadline = gettime() + seconds, co = false, live = false })
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
  local waiting = event_waiters[key]
  if waiting == nil then return end
  event_waiters[key] = nil
  if type(waiting) == "thread" then
    local sched = owner_of[waiting]
    if sched then wake(sched, waiting, true) end
    return
  end
  for co in pairs(waiting) do
    local sched = owner_of[co]
    if sched then wake(sched, co, true) end
  end
end

--- Lets the other tasks run once, then returns (in a scheduler's task;
-- at once when it is alone and the run has no time limit);
-- elsewhere does nothing.
function M.pause()
  local sched = M.current()
  -- A task alone, under a run without a time limit, would be resumed at
  -- once: it goes on without the turn (a yield, a look at the sockets, a
  -- resume), which fairness (Driver:fair) would otherwise pay every 256 KiB.
  if sched and (sched.tasks > 1 or sched.limit) then coroutine_yield() end
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
