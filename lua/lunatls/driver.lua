--- The driver: calls the C core, moves TLS bytes between a connection and
-- its transport after every call, and waits on the transport when the core
-- asks for I/O. It is the analogue of rustls's `complete_io` (and of
-- LuaSocket's `io.h`): the stream (lunatls.stream) builds its buffering,
-- reader and writer turns and close policy on it.
--
-- Internally every failure is a `Failure` object, compared by identity
-- (`failure == driver.TIMEOUT`), never by its message. `Failure:unpack()`
-- gives the public `nil, message, code`.
-- @module lunatls.driver

local socket = require "socket"
local scheduler = require "lunatls.scheduler"

local gettime = socket.gettime

local M = {}

-- Largest read from the transport in one call.
local READ_MAX = 64 * 1024
-- Bytes a driver may move without waiting before it lets other coroutines
-- run (fairness: one busy peer must not hold up the others).
local FAIR_SHARE = 256 * 1024
M.FAIR_SHARE = FAIR_SHARE

-- ---- failures ----

local Failure = {}
Failure.__index = Failure
Failure.__name = "lunatls.Failure"

--- A failure: `message` and `code` as the public API returns them.
function M.failure(message, code)
  return setmetatable({ message = message, code = code }, Failure)
end

--- Is `value` a Failure?
function M.is_failure(value)
  return getmetatable(value) == Failure
end

--- `nil, message, code`.
function Failure:unpack()
  return nil, self.message, self.code
end

function Failure:__tostring()
  return ("%s (%s)"):format(tostring(self.message), tostring(self.code))
end

--- The operation's time ran out (the stream stays usable).
M.TIMEOUT = M.failure("timeout", "timeout")
--- The stream was closed by another coroutine while this one waited.
M.CLOSED = M.failure("closed", "closed")

local TIMEOUT, CLOSED = M.TIMEOUT, M.CLOSED

-- ---- the driver object ----

local Driver = {}
Driver.__index = Driver

--- Makes the driver of `conn` over `transport`.
-- @param conn a `lunatls.Conn`
-- @param transport see docs/transports.md
-- @tparam[opt] number idle_timeout the longest one wait may last (seconds)
function M.new(conn, transport, idle_timeout)
  -- No network end: OpenSSL does the I/O itself, on the descriptor (fd
  -- mode: the fd transport, the socket transport attached) or on the
  -- transport's BIO (an attached memory pipe); the driver only waits.
  local net = conn:bio() or false
  -- Fields that may be absent read false, not nil (a missing field is
  -- looked up in the class too, ~120 instructions per read).
  return setmetatable({
    conn = conn,
    transport = transport,
    net = net,           -- the network end (BIO mode)
    ring_size = net and net:write_guarantee(), -- its room while empty
    -- the transport moves bytes to and from the network end itself
    -- (send_from, receive_into, in C: the socket transport not attached, a
    -- memory pipe made with chunk): `out` and `carry` then stay empty
    -- outside the handshake's flush_reading
    direct = net and transport.send_from ~= nil and transport.receive_into ~= nil,
    -- OpenSSL does the I/O on a transport in this process (memory.lua's
    -- attach): after each call of the connection, `transport:kick()` wakes
    -- the peer if anyone waits (`transport.waiting`)
    kicks = not net and transport.kick ~= nil,
    out = "",            -- TLS bytes taken from the network end, not yet sent
    carry = "",          -- TLS bytes received, not yet taken by the network end
    flushing = 0,        -- coroutines waiting to flush
    sending = false,     -- inside transport:send (which may yield)
    receiving = false,   -- inside transport:receive (which may yield)
    eof_in = false,      -- the transport reported end of stream
    write_error = false, -- Failure: the transport stopped taking bytes
    closed = false,      -- set by the stream's close: waiters give up
    writer = false,      -- the coroutine holding the writer's turn
    idle_timeout = idle_timeout,
    moved = 0,           -- bytes moved since the last wait (fairness)
    held_failure = false, -- Failure a transport reported to read_now, for read
  }, Driver)
end

--- Waits once on the transport for `what` ("read", "write" or "any"),
-- within `deadline` and the idle timeout. This is the one place that waits
-- and then checks for a timeout and for a stream closed meanwhile.
-- @return true, or nil, Failure (TIMEOUT or CLOSED)
function Driver:wait(what, deadline)
  local now = gettime()
  if deadline and now >= deadline then return nil, TIMEOUT end
  local limit = deadline
  if self.idle_timeout then
    local idle = now + self.idle_timeout
    if not limit or idle < limit then limit = idle end
  end
  self.moved = 0
  local ready = self.transport:wait(what, limit)
  if self.closed then return nil, CLOSED end
  if not ready then return nil, TIMEOUT end
  return true
end

--- Lets other coroutines run when this driver has moved a lot without
-- waiting; also enforces the deadline while data keeps coming.
-- @return true, or nil, Failure
function Driver:fair(count, deadline)
  self.moved = self.moved + count
  if self.moved < FAIR_SHARE then return true end
  self.moved = 0
  if deadline and gettime() >= deadline then return nil, TIMEOUT end
  local transport = self.transport
  if transport.pause then transport:pause() else scheduler.pause() end
  if self.closed then return nil, CLOSED end
  return true
end

--- Is another coroutine pushing this stream's bytes out (sending, waiting
-- to flush, or holding the writer's turn)? Then it will push ours too.
function Driver:others_flush()
  local writer = self.writer
  return self.flushing > 0 or self.sending or (writer and writer ~= coroutine.running())
end

--- Moves what the connection wrote to its network end into `out`, then as
-- much of `out` as the transport takes now. Never waits (unless the
-- transport's send itself yields, see docs/transports.md).
-- @return true, or nil, Failure (the write_error)
function Driver:push(deadline)
  local net = self.net
  if not net then return true end
  if self.direct and self.out == "" then return self:push_direct() end
  local data = net:read()
  if self.write_error then return nil, self.write_error end -- nowhere to go: dropped
  if data then self.out = self.out == "" and data or self.out .. data end
  if self.out == "" or self.sending then return true end
  -- A transport whose send yields (copas) may be inside a send for another
  -- coroutine: that one sends these bytes too, after its own.
  self.sending = true
  local n, message, code = self.transport:send(self.out, deadline)
  self.sending = false
  if not n then
    self.write_error, self.out = M.failure(message, code or "eof"), ""
    return nil, self.write_error
  end
  if n > 0 then self.out = self.out:sub(n + 1) end
  return true
end

--- push for a direct transport: the bytes go from the network end into
-- the transport (`send_from`), what it does not take stays in the ring.
-- @return true, or nil, Failure (the write_error)
function Driver:push_direct()
  local net = self.net
  if self.write_error then
    net:read() -- nowhere to go: dropped
    return nil, self.write_error
  end
  if net:pending() == 0 then return true end
  local n, message, code = self.transport:send_from(net)
  if not n then
    self.write_error = M.failure(message, code or "eof")
    net:read()
    return nil, self.write_error
  end
  return true
end

--- Is some of what the connection wrote still on its way (here, not yet in
-- the transport)?
function Driver:unsent()
  return self.out ~= "" or (self.direct and self.net:pending() > 0)
end

--- Is everything the connection wrote in the transport?
function Driver:flushed()
  return not self.net or (self.out == "" and self.net:pending() == 0)
end

--- Pushes until everything the connection wrote is in the transport.
-- @return true, or nil, Failure
function Driver:flush(deadline)
  if not self.net then return true end
  while true do
    local ok, failure = self:push(deadline)
    if not ok then return nil, failure end
    if self:flushed() then return true end
    if self:unsent() then
      self.flushing = self.flushing + 1
      ok, failure = self:wait("write", deadline)
      self.flushing = self.flushing - 1
      if not ok then return nil, failure end
    end
  end
end

--- Takes bytes from the transport into the network end. `wait_for`: what to
-- wait for when nothing has arrived ("read", or "any" when output is
-- pending too), or nil not to wait.
-- @return true, or nil, Failure
function Driver:fill(deadline, wait_for)
  local net = self.net
  if self.carry ~= "" then
    local n = net:write(self.carry)
    self.carry = self.carry:sub(n + 1)
    return true
  end
  if self.eof_in then
    -- the transport ended and the connection still wants bytes
    return nil, M.failure("read: unexpected eof: the transport ended", "eof")
  end
  if self.receiving then -- another coroutine is inside a receive that yields
    if not wait_for then return true end
    return self:wait("read", deadline)
  end
  if self.direct then return self:fill_direct(deadline, wait_for) end
  self.receiving = true
  -- no more than the network end takes: the rest would be copied to carry
  local room = net:write_guarantee()
  local data, status, code = self.transport:receive(room > 0 and room < READ_MAX and room or READ_MAX,
                                                    deadline)
  self.receiving = false
  if data then
    local n = net:write(data)
    if n < #data then self.carry = data:sub(n + 1) end
    return self:fair(#data, deadline)
  elseif status == "closed" then
    self.eof_in = true
    net:shutdown_write() -- the connection sees end of stream
    return true
  elseif status ~= "want_read" then
    return nil, M.failure(status, code or "syscall")
  end
  if not wait_for then return true end
  return self:wait(wait_for, deadline)
end

--- One `receive_into` from a direct transport into the network end, never
-- more than it has room for. At the end of stream the network end's
-- writing side is shut: the connection reads end of stream.
-- @return bytes moved (0: no room, or nothing yet), and true at the end of
-- stream; or nil, Failure
local function take_direct(self)
  local n, status, code = self.transport:receive_into(self.net, READ_MAX)
  if n and n > 0 then return n end
  if status == "closed" then
    self.eof_in = true
    self.net:shutdown_write()
    return 0, true
  elseif n == nil and status ~= "want_read" then
    return nil, M.failure(status, code or "syscall")
  end
  return 0
end

--- fill for a direct transport (`take_direct`), waiting for `wait_for` when
-- nothing came.
-- @return true, or nil, Failure
function Driver:fill_direct(deadline, wait_for)
  local n, ended = take_direct(self)
  if not n then return nil, ended end -- ended: the Failure
  if n > 0 then return self:fair(n, deadline) end
  -- n == 0: no room, the connection has bytes to read first: wait, do not spin
  if ended or not wait_for then return true end
  return self:wait(wait_for, deadline)
end

--- `read`'s short path over a direct transport, for a caller that must not
-- wait or yield (the stream's `read_now`): the connection's incoming ring
-- is empty, so what the transport holds goes in first, then one read. The
-- bytes moved count toward the fair share; the turn is the next
-- operation's (a yield here would let another reader in).
-- @return data, or nil: then `read` goes on from here (the bytes moved stay
-- in the ring, a failure of the transport is kept for it)
function Driver:read_now(max)
  local net = self.net
  if not (self.direct and not self.receiving and self.carry == "" and not self.eof_in
          and not self.held_failure and net:write_guarantee() == self.ring_size) then
    return nil
  end
  local n, failure = take_direct(self)
  if not n then
    self.held_failure = failure
    return nil
  end
  if n == 0 then return nil end
  self.moved = self.moved + n
  local conn = self.conn
  return conn.read(conn, max) or nil
end

--- Waits as the connection asked (`want`: "want_read" or "want_write").
-- @return true, or nil, Failure
function Driver:await(want, deadline)
  if not self.net then -- fd mode: OpenSSL does the I/O, we only wait
    return self:wait(want == "want_read" and "read" or "write", deadline)
  end
  if want == "want_write" then return self:flush(deadline) end
  -- The peer may be waiting for what we wrote before it sends: when some of
  -- it is still here (and no other coroutine is pushing it), wait for
  -- either direction, so that neither side insists on writing while the
  -- other does too (a small pipe, a peer that sends before it reads).
  if self:unsent() and not self:others_flush() then
    return self:fill(deadline, "any")
  end
  return self:fill(deadline, "read")
end

--- Calls `conn[method](conn, arg, i, j)` until it stops asking for I/O, moving
-- bytes after every call and waiting as asked. `status_first`: the method
-- returns its status word first (do_handshake, shutdown) rather than after
-- a nil (read, write). A Lua callback that raised inside the core (e.g.
-- `servername`) is a failure of this connection, code "callback": the
-- stream makes its connections with `callback_errors = "return"`.
-- @return what the last call returned, or nil, Failure
function Driver:drive(deadline, method, status_first, arg, i, j)
  local conn = self.conn
  while true do
    local a, b, c = conn[method](conn, arg, i, j)
    if self.kicks and self.transport.waiting then self.transport:kick() end
    local pushed, failure = self:push(deadline)
    local want
    if status_first then want = a elseif a == nil then want = b end
    if want ~= "want_read" and want ~= "want_write" then
      return a, b, c -- a result (a failed push is the next write's business)
    end
    if want == "want_write" and not pushed then return nil, failure end
    local waited, why = self:await(want, deadline)
    if not waited then return nil, why end
  end
end

--- `drive(deadline, "read", false, max)`, with its common case made short:
-- what a direct transport holds is moved into an empty ring first, then
-- the loop is `drive`'s: read, push what a read that returned no data
-- wrote (an alert), wait as the connection asks.
-- @return data, or what the last read returned, or nil, Failure
function Driver:read(deadline, max)
  local conn, net = self.conn, self.net
  if self.moved >= FAIR_SHARE then -- read a lot without waiting: the others first
    local ok, failure = self:fair(0, deadline)
    if not ok then return nil, failure end
  end
  -- The connection's incoming ring is empty: a read now could only say
  -- want_read (or give what OpenSSL holds decrypted). Bytes the transport
  -- has go into the ring first; a failure to take them waits until the
  -- connection has nothing left to give.
  local early_failure = self.held_failure -- what read_now's move met
  self.held_failure = false
  if not early_failure and self.direct and not self.receiving and self.carry == ""
     and not self.eof_in and net:write_guarantee() == self.ring_size then
    local took, failure = self:fill_direct(deadline, nil)
    if not took then early_failure = failure end
  end
  while true do
    local data, status, code = conn.read(conn, max)
    if self.kicks and self.transport.waiting then self.transport:kick() end
    -- data: OpenSSL wrote nothing (a KeyUpdate's answer waits for the next
    -- write), and no call is spent on looking
    if data then
      -- over a descriptor the plaintext counts (over a BIO pair, the
      -- ciphertext the driver moved has)
      if not net then self.moved = self.moved + #data end
      return data
    end
    -- what the read wrote (an alert, a handshake message) goes out now
    local pushed, failure = self:push(deadline)
    if status == "want_read" and early_failure then return nil, early_failure end
    if status ~= "want_read" and status ~= "want_write" then
      return nil, status, code -- a result (a failed push is the next write's business)
    end
    if status == "want_write" and not pushed then return nil, failure end
    local waited, why = self:await(status, deadline)
    if not waited then return nil, why end
  end
end

--- Flushes without refusing to read meanwhile: bytes arriving while the
-- transport takes no more of ours are kept (at most `limit` bytes) for the
-- connection's next read. For the end of a handshake, where the peer may
-- be sending before it reads (a TLS 1.3 server's session tickets then wait
-- in a small pipe while the client's data fills the other direction).
-- @return true, or nil, Failure
function Driver:flush_reading(deadline, limit)
  if not self.net then return true end
  local parts, held = { self.carry }, #self.carry
  local reading = not self.eof_in and not self.receiving
  local function done(...)
    self.carry = table.concat(parts)
    return ...
  end
  while true do
    local ok, failure = self:push(deadline)
    if not ok then return done(nil, failure) end
    if self:flushed() then return done(true) end
    local what = "write"
    if reading and held < limit then
      local data, status = self.transport:receive(READ_MAX, deadline)
      if data then
        parts[#parts + 1] = data
        held = held + #data
        what = nil -- more may be there: try again at once
      elseif status == "want_read" then
        what = "any"
      else
        reading = false -- its end, or an error: the next read reports it
      end
    end
    if what then
      ok, failure = self:wait(what, deadline)
      if not ok then return done(nil, failure) end
    end
  end
end

--- Takes (and drops) what the transport has, without waiting: for a close
-- that must not leave unread bytes behind (they would turn into a reset).
-- @return true while the transport is open, false at its end
function Driver:drain_transport()
  if self.eof_in then return false end
  local data, status = self.transport:receive(READ_MAX)
  if data then return true end
  if status == "want_read" then return true end
  self.eof_in = true
  return false
end

return M
