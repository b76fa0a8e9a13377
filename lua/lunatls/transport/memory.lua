--- In-memory transport: a pipe pair, each end a transport. What one end
-- sends, the other receives. For tests (no sockets, exact control over how
-- bytes arrive) and for TLS inside TLS (relay one end through an outer
-- stream).
--
--     local memory = require "lunatls.transport.memory"
--     local a, b = memory.pipe()
--     local client = tls.wrap(a, client_ctx, { server_name = "localhost" })
--     local server = tls.wrap(b, server_ctx)
--
-- A waiting end waits on an event (see `lunatls.scheduler.wait_event`): in a
-- scheduler's task it yields to the scheduler until the other end acts.
-- @module lunatls.transport.memory

local scheduler = require "lunatls.scheduler"

local M = {}

local DEFAULT_CAPACITY = 256 * 1024

--- A one-way byte queue: chunks, and the offset read into the first.
local Queue = {}
Queue.__index = Queue

-- `both`: the key "any" waiters of the pipe wait on; `events`: how to wait.
local function new_queue(capacity, both, events)
  return setmetatable({ chunks = {}, first = 1, last = 0, offset = 0, size = 0,
                        capacity = capacity, eof = false, both = both, events = events }, Queue)
end

function Queue:push(data)
  self.last = self.last + 1
  self.chunks[self.last] = data
  self.size = self.size + #data
end

function Queue:pop(max)
  local first, next_chunk = self.chunks[self.first], self.chunks[self.first + 1]
  -- the common case: one whole chunk is all there is (or all that fits), no copy
  if self.offset == 0 and #first <= max and (not next_chunk or #first + #next_chunk > max) then
    self.chunks[self.first] = nil
    self.first = self.first + 1
    self.size = self.size - #first
    return first
  end
  local parts, got = {}, 0
  while got < max and self.first <= self.last do
    local chunk = self.chunks[self.first]
    local take = math.min(#chunk - self.offset, max - got)
    parts[#parts + 1] = chunk:sub(self.offset + 1, self.offset + take)
    got = got + take
    self.offset = self.offset + take
    if self.offset == #chunk then
      self.chunks[self.first] = nil
      self.first, self.offset = self.first + 1, 0
    end
  end
  self.size = self.size - got
  return table.concat(parts)
end

-- Wakes who waits on the queue, and every "any" waiter of the pipe.
local function notify(queue)
  local events = queue.events
  events.notify(queue)
  events.notify(queue.both)
end

local End = {}
End.__index = End
End.__name = "lunatls.transport.memory"

--- Makes a connected pair of ends.
-- @tparam[opt] table options `capacity` (bytes each direction holds before
-- `send` takes fewer; default 256 KiB), `chunk` (the most bytes one `send`
-- or `receive` moves: 1 delivers a byte at a time; default unlimited), and
-- how the ends wait: `wait_event(key, deadline)`, `notify(key)`, `pause()`
-- (default: the scheduler's)
-- @return two transports
function M.pipe(options)
  options = options or {}
  local capacity = options.capacity or DEFAULT_CAPACITY
  local events = {
    wait_event = options.wait_event or scheduler.wait_event,
    notify = options.notify or scheduler.notify,
    pause = options.pause or scheduler.pause,
  }
  -- "any" waiters of both ends wait on one key, notified with every change
  local both = {}
  local ab, ba = new_queue(capacity, both, events), new_queue(capacity, both, events)
  local a = setmetatable({ incoming = ba, outgoing = ab, chunk = options.chunk, both = both }, End)
  local b = setmetatable({ incoming = ab, outgoing = ba, chunk = options.chunk, both = both }, End)
  return a, b
end

--- Sends what fits.
-- @return bytes taken (maybe 0), or nil, message, "eof" once either end closed
function End:send(data)
  local queue = self.outgoing
  if self.closed or queue.eof then
    return nil, "send: the pipe is closed", "eof"
  end
  local n = math.min(#data, queue.capacity - queue.size, self.chunk or math.huge)
  if n > 0 then
    queue:push(n == #data and data or data:sub(1, n))
    notify(queue)
  end
  return n
end

--- Receives at most `max` bytes.
-- @return data, nil, "want_read", or nil, "closed" (the other end closed and
-- everything it sent has been read)
function End:receive(max)
  local queue = self.incoming
  if self.closed then return nil, "receive: the pipe is closed", "eof" end
  if queue.size == 0 then
    return nil, queue.eof and "closed" or "want_read"
  end
  local data = queue:pop(math.min(max or math.huge, self.chunk or math.huge))
  notify(queue)
  return data
end

--- Waits until there is something to read (or the other end closed), or
-- room to write (`what`: "read", "write", or "any": either). Like select, it may return before that holds (another
-- coroutine took the bytes first): the caller tries, and waits again. It
-- always lets the other tasks run first, as a wait on a socket does: the
-- stream may be waiting for another coroutine to finish with the transport.
-- @return true, or nil, "timeout"
function End:wait(what, deadline)
  local incoming, outgoing = self.incoming, self.outgoing
  local can_read = what ~= "write" and (incoming.size > 0 or incoming.eof)
  local can_write = what ~= "read" and (outgoing.size < outgoing.capacity or outgoing.eof)
  if can_read or can_write then
    incoming.events.pause()
    return true
  end
  if what == "any" then -- either queue moving wakes us
    return incoming.events.wait_event(self.both, deadline)
  end
  return incoming.events.wait_event(what == "read" and incoming or outgoing, deadline)
end

--- Closes this end: the other end reads what was sent, then "closed"; its
-- sends fail.
function End:close()
  if self.closed then return end
  self.closed = true
  self.outgoing.eof = true
  self.incoming.eof = true
  notify(self.outgoing)
  notify(self.incoming)
end

--- Signals end of stream to the other end, which still may send.
function End:shutdown_write()
  self.outgoing.eof = true
  notify(self.outgoing)
end

--- Bytes sent by the other end and not yet received here.
function End:pending()
  return self.incoming.size
end

return M
