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
-- The pipe is one lunatls BIO pair (each direction a ring that is allocated
-- on the first write and freed when read empty), an end of it per pipe end.
-- A stream wrapping an end hands that BIO to its connection (`attach`):
-- OpenSSL then writes its records into the ring the peer's connection reads
-- from, as over a socket, with no copy and no Lua call per record (6 K to
-- 23 K instructions less per operation: bench/README.md). After each
-- call of the connection, while a task waits on the pipe (`waiting`), the
-- stream calls `kick`, which wakes it (it is in the same process: nothing
-- else would). An end made with `chunk` (bytes delivered a few at a time),
-- or of a pipe under 16 KiB each way, is not attached: its stream moves the
-- bytes through `send_from`/`receive_into`, ring to ring in C
-- (`bio:move_to`), `chunk` at a time.
--
-- A waiting end waits on an event (see `lunatls.scheduler.wait_event`): in a
-- scheduler's task it yields to the scheduler until the other end acts.
-- @module lunatls.transport.memory

local core = require "lunatls.core"
local scheduler = require "lunatls.scheduler"

local M = {}

local DEFAULT_CAPACITY = 256 * 1024
local MAX_CAPACITY = 64 * 1024 * 1024 -- a BIO pair's largest ring
-- The smallest pipe whose ends a stream attaches (End:attach): a flight of
-- handshake messages fits
local MIN_ATTACHED = 16 * 1024

--- One direction: whether its writer has ended (`eof`), and whether anyone
-- waits on it since the last notification (`waited`: moving bytes nobody
-- waits for then costs no call). The bytes are in the pipe's BIO pair.
-- `both`: the key "any" waiters of the pipe wait on; `events`: how to wait.
local function new_queue(both, events)
  return { eof = false, waited = false, both = both, events = events }
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

local NO_OPTIONS = {}

-- How the ends of a pipe wait, unless pipe's options say otherwise.
local SCHEDULER_EVENTS = { wait_event = scheduler.wait_event, notify = scheduler.notify,
                           pause = scheduler.pause }

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
  options = options or NO_OPTIONS
  local capacity = options.capacity or DEFAULT_CAPACITY
  if math.type(capacity) ~= "integer" or capacity < 1 or capacity > MAX_CAPACITY then
    error("pipe: capacity must be an integer from 1 to 64 MiB", 2)
  end
  local chunk = options.chunk
  if chunk ~= nil and (math.type(chunk) ~= "integer" or chunk < 1) then
    error("pipe: chunk must be a positive integer", 2)
  end
  local events = SCHEDULER_EVENTS
  if options.wait_event or options.notify or options.pause then
    events = {
      wait_event = options.wait_event or scheduler.wait_event,
      notify = options.notify or scheduler.notify,
      pause = options.pause or scheduler.pause,
    }
  end
  -- "any" waiters of both ends wait on one key, notified with every change
  local both = { waited = false }
  local ab, ba = new_queue(both, events), new_queue(both, events)
  -- what x writes, y reads, and the other way round
  local x, y = core.new_bio_pair(capacity)
  local a = setmetatable({ bio = x, incoming = ba, outgoing = ab, chunk = chunk,
                           capacity = capacity, both = both, waiting = false }, End)
  local b = setmetatable({ bio = y, incoming = ab, outgoing = ba, chunk = chunk,
                           capacity = capacity, both = both, waiting = false }, End)
  a.other, b.other = b, a
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
  local n = self.bio:write(data, 1, self.chunk)
  if n > 0 then notify(queue) end
  return n
end

--- Sends what the network end `net` holds (what fits), ring to ring.
-- @return bytes taken (maybe 0), or nil, message, "eof" as `send`
function End:send_from(net)
  local queue = self.outgoing
  if self.closed or queue.eof then return closed_for_sending() end
  local n = net:move_to(self.bio, self.chunk)
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
  local data = self.bio:read(capped(self, max))
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
  local bio = self.bio
  local n = bio:move_to(net, capped(self, max))
  if n and n > 0 then
    notify(queue)
    return n
  end
  if bio:pending() > 0 then return 0 end
  return nothing_here(queue)
end

--- Waits until there is something to read (or the other end closed), or
-- room to write (`what`: "read", "write", or "any": either). Like select, it may return before that holds (another
-- coroutine took the bytes first): the caller tries, and waits again. It
-- always lets the other tasks run first, as a wait on a socket does: the
-- stream may be waiting for another coroutine to finish with the transport.
-- @return true, or nil, "timeout"
function End:wait(what, deadline)
  local incoming, outgoing, bio = self.incoming, self.outgoing, self.bio
  local can_read = what ~= "write" and (incoming.eof or bio:pending() > 0)
  local can_write = what ~= "read" and (outgoing.eof or bio:write_guarantee() > 0)
  if can_read or can_write then
    incoming.events.pause()
    return true
  end
  local key = what == "any" and self.both or what == "read" and incoming or outgoing
  key.waited = true
  self.waiting, self.other.waiting = true, true -- kick from either end wakes it
  return incoming.events.wait_event(key, deadline)
end

--- Closes this end: the other end reads what was sent, then "closed"; its
-- sends fail.
function End:close()
  if self.closed then return end
  self.closed = true
  self.outgoing.eof = true
  self.incoming.eof = true
  -- for attached connections: the other end's reads end, and its writes fail
  self.bio:shutdown_write()
  self.other.bio:shutdown_write()
  notify(self.outgoing)
  notify(self.incoming)
end

--- Signals end of stream to the other end, which still may send.
function End:shutdown_write()
  self.outgoing.eof = true
  self.bio:shutdown_write()
  notify(self.outgoing)
end

--- Bytes sent by the other end and not yet received here.
function End:pending()
  return self.bio:pending()
end

--- Attached mode (docs/transports.md): `"bio"` and the BIO a stream's
-- connection uses as its transport (`new_conn{bio =}`), or nil: then the
-- stream moves the bytes. After every call of an attached connection the
-- stream calls `kick` if `waiting` is true.
--
-- Not for an end made with `chunk` (bytes delivered a few at a time), nor
-- for a pipe of less than MIN_ATTACHED bytes each way: the stream keeps
-- the handshake's last flight (a TLS 1.3 server's tickets) in its
-- connection's BIO pair while the peer sends before it reads (issue 10); an
-- attached connection writes it into the pipe, which must have room for it.
function End:attach()
  if self.chunk or self.capacity < MIN_ATTACHED then return nil end
  return "bio", self.bio
end

--- After the attached connection has read or written the pipe itself:
-- wakes whoever waits on the pipe. The stream calls it only while
-- `self.waiting` (set by `wait`, on both ends) is true: while nobody waits,
-- a call of the connection costs no call here.
function End:kick()
  self.waiting, self.other.waiting = false, false
  notify(self.outgoing)
  notify(self.incoming)
end

return M
