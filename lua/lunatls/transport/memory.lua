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
-- Each direction keeps its bytes in a lunatls BIO pair (a ring that is
-- allocated on the first write and freed when read empty), so the ends can
-- offer `send_from`/`receive_into`: a stream's ciphertext then goes from its
-- connection's network end into the pipe and out into the peer's, ring to
-- ring in C (`bio:move_to`), with no Lua string per record.
--
-- A waiting end waits on an event (see `lunatls.scheduler.wait_event`): in a
-- scheduler's task it yields to the scheduler until the other end acts.
-- @module lunatls.transport.memory

local core = require "lunatls.core"
local scheduler = require "lunatls.scheduler"

local M = {}

local DEFAULT_CAPACITY = 256 * 1024
local MAX_CAPACITY = 64 * 1024 * 1024 -- a BIO pair's largest ring

--- One direction: the BIO pair end written (`w`) and the one read (`r`),
-- whether the writer has ended (`eof`), and whether anyone waits on it
-- since the last notification (`waited`: moving bytes nobody waits for
-- then costs no call).
-- `both`: the key "any" waiters of the pipe wait on; `events`: how to wait.
local function new_queue(capacity, both, events)
  local w, r = core.new_bio_pair(capacity)
  return { w = w, r = r, eof = false, waited = false, both = both, events = events }
end

-- Wakes who waits on the queue, and every "any" waiter of the pipe (only
-- those that wait: moving bytes nobody waits for wakes no one).
local function notify(queue)
  if queue.waited then
    queue.waited = false
    queue.events.notify(queue)
  end
  local both = queue.both
  if both.waited then
    both.waited = false
    queue.events.notify(both)
  end
end

local End = {}
End.__index = End
End.__name = "lunatls.transport.memory"

--- Makes a connected pair of ends.
-- @tparam[opt] table options `capacity` (bytes each direction holds before
-- `send` takes fewer; default 256 KiB, at most 64 MiB), `chunk` (the most
-- bytes one `send` or `receive` moves: 1 delivers a byte at a time; default
-- unlimited), and how the ends wait: `wait_event(key, deadline)`,
-- `notify(key)`, `pause()` (default: the scheduler's)
-- @return two transports
function M.pipe(options)
  options = options or {}
  local capacity = options.capacity or DEFAULT_CAPACITY
  if math.type(capacity) ~= "integer" or capacity < 1 or capacity > MAX_CAPACITY then
    error("pipe: capacity must be an integer from 1 to 64 MiB", 2)
  end
  local chunk = options.chunk
  if chunk ~= nil and (math.type(chunk) ~= "integer" or chunk < 1) then
    error("pipe: chunk must be a positive integer", 2)
  end
  local events = {
    wait_event = options.wait_event or scheduler.wait_event,
    notify = options.notify or scheduler.notify,
    pause = options.pause or scheduler.pause,
  }
  -- "any" waiters of both ends wait on one key, notified with every change
  local both = { waited = false }
  local ab, ba = new_queue(capacity, both, events), new_queue(capacity, both, events)
  local a = setmetatable({ incoming = ba, outgoing = ab, chunk = chunk, both = both }, End)
  local b = setmetatable({ incoming = ab, outgoing = ba, chunk = chunk, both = both }, End)
  return a, b
end

local function closed_for_sending()
  return nil, "send: the pipe is closed", "eof"
end

--- Sends what fits.
-- @return bytes taken (maybe 0), or nil, message, "eof" once either end closed
function End:send(data)
  local queue = self.outgoing
  if self.closed or queue.eof then return closed_for_sending() end
  local n = queue.w:write(data, 1, self.chunk)
  if n > 0 then notify(queue) end
  return n
end

--- Sends what the network end `net` holds (what fits), ring to ring.
-- @return bytes taken (maybe 0), or nil, message, "eof" as `send`
function End:send_from(net)
  local queue = self.outgoing
  if self.closed or queue.eof then return closed_for_sending() end
  local n = net:move_to(queue.w, self.chunk)
  if n > 0 then notify(queue) end
  return n
end

-- `max` within the end's `chunk` (nil: no limit).
local function capped(self, max)
  local chunk = self.chunk
  if chunk and (not max or max > chunk) then return chunk end
  return max
end

-- Nothing was there to take: "want_read", or "closed" once the other end
-- has closed and everything it sent has been read.
local function nothing_here(queue)
  return nil, queue.eof and "closed" or "want_read"
end

--- Receives at most `max` bytes.
-- @return data, nil, "want_read", or nil, "closed" (the other end closed and
-- everything it sent has been read)
function End:receive(max)
  local queue = self.incoming
  if self.closed then return nil, "receive: the pipe is closed", "eof" end
  local data = queue.r:read(capped(self, max))
  if not data then return nothing_here(queue) end
  notify(queue)
  return data
end

--- Receives into the network end `net` (at most `max` bytes, no more than
-- it has room for), ring to ring.
-- @return bytes received (0: `net` has no room), or `receive`'s failures
function End:receive_into(net, max)
  local queue = self.incoming
  if self.closed then return nil, "receive: the pipe is closed", "eof" end
  local r = queue.r
  local n = r:move_to(net, capped(self, max))
  if n and n > 0 then
    notify(queue)
    return n
  end
  if r:pending() > 0 then return 0 end
  return nothing_here(queue)
end

--- Waits until there is something to read (or the other end closed), or
-- room to write (`what`: "read", "write", or "any": either). Like select, it may return before that holds (another
-- coroutine took the bytes first): the caller tries, and waits again. It
-- always lets the other tasks run first, as a wait on a socket does: the
-- stream may be waiting for another coroutine to finish with the transport.
-- @return true, or nil, "timeout"
function End:wait(what, deadline)
  local incoming, outgoing = self.incoming, self.outgoing
  local can_read = what ~= "write" and (incoming.eof or incoming.r:pending() > 0)
  local can_write = what ~= "read" and (outgoing.eof or outgoing.w:write_guarantee() > 0)
  if can_read or can_write then
    incoming.events.pause()
    return true
  end
  local key = what == "any" and self.both or what == "read" and incoming or outgoing
  key.waited = true
  return incoming.events.wait_event(key, deadline)
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
  return self.incoming.r:pending()
end

return M
