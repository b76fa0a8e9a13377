--- A TLS stream over a transport: every call looks blocking inside a
-- coroutine, and yields while it waits.
--
-- Underneath, a driver calls the C core, moves bytes between the
-- connection's network end and the transport after *every* call (including
-- one that returned `"want_read"`), and on `"want_read"`/`"want_write"` waits
-- on the transport, which yields to the scheduler. See docs/coroutines.md.
--
-- Results: success values as documented per method; every failure is
-- `nil, message, code[, partial]` with `code` one of the core's codes
-- (`"verify"`, `"protocol"`, `"eof"`, `"closed"`, `"syscall"`: the table is in
-- docs/api.md, "Statuses and error codes") or
-- `"timeout"` (then the message is `"timeout"` too, and the stream stays
-- usable). The peer's close_notify ends reading only; a transport that stops
-- taking bytes ends writing only. Any other failure leaves the stream dead:
-- every later call returns the same failure.
-- @module lunatls.stream

local socket = require "socket"

local gettime = socket.gettime

local M = {}

-- Plaintext given to one conn:write: one TLS record, so a write that stops
-- short has committed the whole piece (OpenSSL then holds the record, and the
-- retry must offer the same bytes).
local CHUNK = 16384
-- Largest read from the transport in one call.
local READ_MAX = 64 * 1024
-- How long close() tries to deliver close_notify, at most (seconds).
local CLOSE_TIMEOUT = 1

local CONN_OPTIONS = { server_name = true, session = true, alpn = true, buffer_size = true }
local STREAM_OPTIONS = { timeout = true, deadline = true, close_timeout = true }

local Stream = {}
Stream.__index = Stream
Stream.__name = "lunatls.Stream"

local TIMEOUT = "timeout"

-- ---- state ----

local function check_open(self)
  if self.closed then error("attempt to use a closed lunatls.Stream", 3) end
end

-- Records a fatal failure: the stream is dead, and says so from now on.
local function die(self, message, code)
  if not self.dead then self.dead = { message, code } end
  return nil, message, code
end

local function dead_result(self)
  return nil, self.dead[1], self.dead[2]
end

--- The deadline of an operation starting now: the per-call timeout, or the
-- stream's deadline, whichever comes first.
local function op_deadline(self)
  local deadline = self.deadline
  if self.timeout then
    local by_timeout = gettime() + self.timeout
    if not deadline or by_timeout < deadline then deadline = by_timeout end
  end
  return deadline
end

-- ---- moving bytes (BIO mode) ----

-- A transport that fails to send ends the writing direction only: what the
-- peer sent before can still be read (as a TCP socket after EPIPE). The
-- failure is kept in `self.write_error` and reported by every later write.
local function write_failure(self)
  return nil, self.write_error[1], self.write_error[2]
end

--- Moves what the connection wrote to its network end into `self.out`, then
-- as much of `self.out` as the transport takes now. Never waits (unless the
-- transport itself yields until the deadline, see docs/transports.md).
local function push(self, deadline)
  local net = self.net
  if not net then return true end
  local data = net:read()
  if self.write_error then return write_failure(self) end -- nowhere to go: dropped
  if data then
    self.out = self.out == "" and data or self.out .. data
  end
  if self.out == "" then return true end
  -- A transport whose send yields (copas) may be inside a send for another
  -- coroutine: that one sends these bytes too, after its own. Two sends at
  -- once would send the same bytes twice.
  if self.sending then return true end
  self.sending = true
  local n, message, code = self.transport:send(self.out, deadline)
  self.sending = false
  if not n then
    self.write_error, self.out = { message, code or "eof" }, ""
    return write_failure(self)
  end
  if n > 0 then self.out = self.out:sub(n + 1) end
  return true
end

--- Pushes until everything the connection wrote is in the transport,
-- waiting for the transport to take it.
local function flush(self, deadline)
  if not self.net then return true end
  while true do
    local ok, message, code = push(self, deadline)
    if not ok then return nil, message, code end
    if self.out == "" and self.net:pending() == 0 then return true end
    if self.out ~= "" then
      self.flushing = self.flushing + 1
      local ready = self.transport:wait("write", deadline)
      self.flushing = self.flushing - 1
      if not ready then return nil, TIMEOUT, TIMEOUT end
      if self.closed then return nil, "closed", "closed" end -- by another coroutine
    end
  end
end

--- Feeds the connection bytes from the transport, or waits once for some to
-- arrive: the caller then asks the connection again (another coroutine may
-- have given it what it needed meanwhile, e.g. finished the handshake).
-- What the network end cannot take yet waits in `self.carry`.
local function fill(self, deadline)
  local net = self.net
  if self.carry ~= "" then
    local n = net:write(self.carry)
    self.carry = self.carry:sub(n + 1)
    return true
  end
  if self.eof_in then
    -- the transport ended and the connection still wants bytes
    return die(self, "read: unexpected eof: the transport ended", "eof")
  end
  if self.receiving then
    -- another coroutine is inside a receive that yields (copas): let it be
    local ready = self.transport:wait("read", deadline)
    if not ready then return nil, TIMEOUT, TIMEOUT end
    return true
  end
  self.receiving = true
  local data, status, code = self.transport:receive(READ_MAX, deadline)
  self.receiving = false
  if data then
    local n = net:write(data)
    if n < #data then self.carry = data:sub(n + 1) end
  elseif status == "closed" then
    self.eof_in = true
    net:shutdown_write() -- the connection sees end of stream
  elseif status ~= "want_read" then
    return die(self, status, code or "syscall")
  else
    local ready = self.transport:wait("read", deadline)
    if not ready then return nil, TIMEOUT, TIMEOUT end
    if self.closed then return nil, "closed", "closed" end -- by another coroutine
  end
  return true
end

-- ---- the driver ----

--- Is another coroutine pushing this stream's bytes out (sending, waiting to
-- flush, or holding the writer's turn)? Then it will push ours too.
local function others_flush(self)
  local writer = self.writer
  return self.flushing > 0 or self.sending or (writer ~= nil and writer ~= coroutine.running())
end

--- Waits as the connection asked (`want`: "want_read" or "want_write").
local function await(self, want, deadline)
  if not self.net then -- fd mode: OpenSSL does the I/O, we only wait
    local ready = self.transport:wait(want == "want_read" and "read" or "write", deadline)
    if not ready then return nil, TIMEOUT, TIMEOUT end
    if self.closed then return nil, "closed", "closed" end -- by another coroutine
    return true
  end
  if want == "want_write" then return flush(self, deadline) end
  -- Before waiting for the peer, make sure it has what we wrote: it may be
  -- waiting for that. When another coroutine is sending or waiting to flush
  -- (full duplex), it will push it all; this one reads meanwhile (waiting
  -- to write here could deadlock with a peer that waits for us to read).
  if self.out ~= "" and not others_flush(self) then
    local ok, message, code = flush(self, deadline)
    if not ok then return nil, message, code end
  end
  return fill(self, deadline)
end

--- Calls `conn[method](conn, arg)` until it stops asking for I/O, moving
-- bytes after every call and waiting as asked. `status_first`: the method
-- returns its status word first (do_handshake, shutdown) rather than after a
-- nil (read, write). Returns what the last call returned, or nil, message,
-- code when moving bytes or waiting failed.
local function drive(self, deadline, method, status_first, arg)
  local conn = self.conn
  while true do
    local a, b, c = conn[method](conn, arg)
    local pushed, message, code = push(self, deadline)
    local want
    if status_first then want = a elseif a == nil then want = b end
    if want ~= "want_read" and want ~= "want_write" then
      return a, b, c -- a result (a failed push is the next write's business)
    end
    if want == "want_write" and not pushed then return nil, message, code end
    local ok
    ok, message, code = await(self, want, deadline)
    if not ok then return nil, message, code end
  end
end

--- Turns a failure into the stream's answer: a timeout leaves it usable, so
-- does a transport that stopped taking bytes (reading may go on); anything
-- else kills it.
local function failure(self, message, code)
  if code == TIMEOUT then return nil, TIMEOUT, TIMEOUT end
  local write_error = self.write_error
  if write_error and message == write_error[1] and code == write_error[2] then
    return nil, message, code
  end
  return die(self, message, code)
end

-- ---- construction ----

--- Wraps a transport: makes a connection of `ctx` on it.
-- @param transport see docs/transports.md
-- @param ctx a `lunatls.Context`
-- @tparam[opt] table opts connection options (`server_name`, `session`,
-- `alpn`, `buffer_size`) and stream options: `timeout` (seconds per call),
-- `deadline` (absolute time, `socket.gettime()` clock, for every call),
-- `close_timeout` (how long `close` tries to deliver close_notify, default 1)
-- @treturn Stream
function M.wrap(transport, ctx, opts)
  opts = opts or {}
  local conn_opts = {}
  for key, value in pairs(opts) do
    if CONN_OPTIONS[key] then
      conn_opts[key] = value
    elseif not STREAM_OPTIONS[key] then
      error(("wrap: unknown option '%s'"):format(tostring(key)), 2)
    end
  end
  if transport.fd ~= nil then conn_opts.fd = transport.fd end
  local conn = ctx:new_conn(conn_opts)
  return setmetatable({
    conn = conn,
    transport = transport,
    net = transport.fd == nil and conn:bio() or nil,
    out = "",       -- TLS bytes taken from the network end, not yet sent
    carry = "",     -- TLS bytes received, not yet taken by the network end
    inbuf = "",     -- plaintext received, not yet returned
    flushing = 0,   -- coroutines waiting to flush
    retry = nil,    -- plaintext OpenSSL holds half written: the next write's bytes
    timeout = opts.timeout,
    deadline = opts.deadline,
    close_timeout = opts.close_timeout or CLOSE_TIMEOUT,
  }, Stream)
end

-- ---- operations ----

--- Runs the handshake until done; every operation starts with it.
local function handshake(self, deadline)
  if not self.handshaken then
    local status, message, code = drive(self, deadline, "do_handshake", true)
    if status ~= "done" then return failure(self, message, code) end
    self.handshaken = true
  end
  -- The last flight (a client's Finished) must reach the peer: once, and
  -- not by this coroutine when another is flushing already (that one may be
  -- pushing application data the peer will only take when we read). A
  -- transport that no longer takes bytes does not undo the handshake: the
  -- next write reports it, and reading goes on.
  if not self.handshake_flushed and not others_flush(self) then
    local ok, message, code = flush(self, deadline)
    if not ok and not self.write_error then return failure(self, message, code) end
    self.handshake_flushed = true
  end
  return true
end

--- Sets the time each later call may take (seconds; nil: no limit).
function Stream:settimeout(seconds)
  self.timeout = seconds
end

--- Sets an absolute deadline (`socket.gettime()` clock) for every later
-- call; nil removes it.
function Stream:setdeadline(when)
  self.deadline = when
end

--- Runs the handshake (again, after a timeout). Calling it is optional:
-- `send` and `receive` handshake first when needed.
-- @return true, or nil, message, code
function Stream:handshake()
  check_open(self)
  if self.dead then return dead_result(self) end
  return handshake(self, op_deadline(self))
end

--- Gives OpenSSL the write it holds half done (if any), until it has taken
-- it, then flushes.
local function finish_write(self, deadline)
  while self.retry do
    local n, message, code = drive(self, deadline, "write", false, self.retry)
    if not n then
      if message == "closed" and code == nil then message, code = "send: closed", "closed" end
      return failure(self, message, code)
    end
    self.retry = n < #self.retry and self.retry:sub(n + 1) or nil
  end
  local ok, message, code = flush(self, deadline)
  if not ok then return failure(self, message, code) end
  return true
end

--- Runs `fn(self, deadline, ...)` as the stream's only writer: a coroutine
-- that finds another one writing waits for its turn, so that each send goes
-- out whole and OpenSSL's pending write (`self.retry`) belongs to one call.
local function as_writer(self, deadline, fn, ...)
  local me = coroutine.running()
  -- A writer that died (raised, or was closed with coroutine.close) holds
  -- no turn; one abandoned while suspended holds it for good, so the wait
  -- keeps to the deadline even when the transport is ready at once.
  while self.writer and self.writer ~= me and coroutine.status(self.writer) ~= "dead" do
    if deadline and gettime() >= deadline then return nil, TIMEOUT, TIMEOUT end
    local ready = self.transport:wait("write", deadline) -- lets the writer run
    if not ready then return nil, TIMEOUT, TIMEOUT end
    if self.closed then return nil, "closed", "closed" end
  end
  local outer = self.writer
  self.writer = me
  local results = table.pack(fn(self, deadline, ...))
  self.writer = outer
  return table.unpack(results, 1, results.n)
end

--- Normalises LuaSocket's `i, j` (string.sub style) for `data`.
local function span(data, i, j)
  local len = #data
  i, j = i or 1, j or len
  if i < 0 then i = math.max(len + i + 1, 1) elseif i == 0 then i = 1 end
  if j < 0 then j = len + j + 1 elseif j > len then j = len end
  return i, j
end

--- The body of `send`, run as the stream's writer.
local function send_span(self, deadline, data, i, j)
  local ok, message, code = handshake(self, deadline)
  if ok then ok, message, code = finish_write(self, deadline) end
  if not ok then return nil, message, code, i - 1 end
  local pos = i
  while pos <= j do
    local last = math.min(pos + CHUNK - 1, j)
    -- room first, so the record goes into the network end whole
    ok, message, code = flush(self, deadline)
    if not ok then return nil, message, code, pos - 1 end
    self.retry = data:sub(pos, last) -- from here on, the stream owes these bytes
    pos = last + 1
    ok, message, code = finish_write(self, deadline)
    if not ok then return nil, message, code, pos - 1 end
  end
  return j
end

--- Sends all of `data` (or `data:sub(i, j)`), as LuaSocket's `send`.
-- @return the index of the last byte sent (`j`, by default `#data`), or
-- `nil, message, code, last` where `last` is the index of the last byte
-- the stream took. After a timeout, bytes up to `last` will still go out
-- (before anything sent later): resend from `last + 1`.
-- Coroutines sending at once take turns: each send goes out whole.
function Stream:send(data, i, j)
  check_open(self)
  i, j = span(data, i, j)
  if self.dead then return nil, self.dead[1], self.dead[2], i - 1 end
  local last, message, code, sent = as_writer(self, op_deadline(self), send_span, data, i, j)
  if last == nil and sent == nil then sent = i - 1 end
  return last, message, code, sent
end

--- Reads what the connection has (at most `max` bytes), waiting for some.
-- @return data, or nil, message, code ("closed" after close_notify)
local function read_core(self, deadline, max)
  if self.peer_closed then return nil, "closed", "closed" end
  if self.dead then return dead_result(self) end
  if not self.handshaken then
    local ok, message, code = handshake(self, deadline)
    if not ok then return nil, message, code end
  end
  local data, message, code = drive(self, deadline, "read", false, max)
  if data then return data end
  if message == "closed" and code == nil then
    self.peer_closed = true
    return nil, "closed", "closed"
  end
  return failure(self, message, code)
end

--- A failed receive: the bytes gathered stay buffered after a timeout (the
-- next receive returns them), and are handed over (`partial`) otherwise.
local function receive_failure(self, message, code)
  if code == TIMEOUT then return nil, TIMEOUT, TIMEOUT end
  local partial = self.inbuf
  self.inbuf = ""
  return nil, message, code, partial
end

local function receive_count(self, deadline, count)
  local parts, have = { self.inbuf }, #self.inbuf
  while have < count do
    local data, message, code = read_core(self, deadline, math.min(count - have, CHUNK))
    if not data then
      self.inbuf = table.concat(parts)
      return receive_failure(self, message, code)
    end
    parts[#parts + 1] = data
    have = have + #data
  end
  local all = table.concat(parts)
  self.inbuf = all:sub(count + 1)
  return all:sub(1, count)
end

local function receive_line(self, deadline, keep_end)
  local from = 1
  while true do
    local eol = self.inbuf:find("\n", from, true)
    if eol then
      local line = self.inbuf:sub(1, eol)
      self.inbuf = self.inbuf:sub(eol + 1)
      if keep_end then return line end
      return (line:gsub("\r?\n$", ""):gsub("\r", ""))
    end
    from = #self.inbuf + 1
    local data, message, code = read_core(self, deadline, CHUNK)
    if not data then return receive_failure(self, message, code) end
    self.inbuf = self.inbuf .. data
  end
end

local function receive_all(self, deadline)
  local parts = { self.inbuf }
  while true do
    local data, message, code = read_core(self, deadline, CHUNK)
    if not data then
      self.inbuf = table.concat(parts)
      if code == "closed" then -- close_notify: everything has arrived
        local all = self.inbuf
        self.inbuf = ""
        return all
      end
      return receive_failure(self, message, code)
    end
    parts[#parts + 1] = data
  end
end

--- Receives, as LuaSocket's `receive`: `"*l"` (default; a line without its
-- end of line, CRs removed), `"*L"` (a line with its end of line), `"*a"`
-- (everything until the peer's close_notify), or a byte count. The Lua 5.4
-- spellings `"l"`, `"L"`, `"a"` work too. `prefix` is put before the result.
-- @return data, or `nil, message, code[, partial]`: after a timeout the bytes
-- received so far stay buffered for the next call; after any other failure
-- (`"closed"` included) they are returned as `partial`.
function Stream:receive(pattern, prefix)
  check_open(self)
  pattern = pattern or "*l"
  local deadline = op_deadline(self)
  local data, message, code, partial
  if type(pattern) == "number" then
    if pattern < 0 or pattern % 1 ~= 0 then error("receive: bad byte count", 2) end
    data, message, code, partial = receive_count(self, deadline, pattern)
  elseif pattern == "*l" or pattern == "l" then
    data, message, code, partial = receive_line(self, deadline, false)
  elseif pattern == "*L" or pattern == "L" then
    data, message, code, partial = receive_line(self, deadline, true)
  elseif pattern == "*a" or pattern == "a" then
    data, message, code, partial = receive_all(self, deadline)
  else
    error("receive: invalid pattern " .. tostring(pattern), 2)
  end
  if data and prefix then data = prefix .. data end
  if not data and prefix and partial then partial = prefix .. partial end
  return data, message, code, partial
end

--- Receives whatever has arrived: between 1 and `max` (default 16384) bytes,
-- waiting only while there is nothing.
-- @return data, or nil, message, code
function Stream:receive_some(max)
  check_open(self)
  max = max or CHUNK
  if #self.inbuf > 0 then
    local data = self.inbuf:sub(1, max)
    self.inbuf = self.inbuf:sub(max + 1)
    return data
  end
  local data, message, code = read_core(self, op_deadline(self), max)
  if not data then return receive_failure(self, message, code) end
  return data
end

--- Sends close_notify (once), flushed to the transport.
local function send_close_notify(self, deadline)
  local ok, message, code = finish_write(self, deadline)
  if not ok then return nil, message, code end
  while not self.sent_close do
    local status
    status, message, code = self.conn:shutdown()
    push(self, deadline)
    if status == "done" or status == "want_read" then
      self.sent_close = true
    elseif status == "want_write" then
      ok, message, code = await(self, status, deadline)
      if not ok then return nil, message, code end
    else
      return failure(self, message, code)
    end
  end
  ok, message, code = flush(self, deadline)
  if not ok then return failure(self, message, code) end
  return true
end

--- Sends close_notify. With `wait_for_peer`, then waits for the peer's:
-- application data arriving meanwhile stays buffered for `receive`.
-- @return true, or nil, message, code
function Stream:shutdown(wait_for_peer)
  check_open(self)
  if self.dead then return dead_result(self) end
  local deadline = op_deadline(self)
  local ok, message, code = handshake(self, deadline)
  if ok then ok, message, code = as_writer(self, deadline, send_close_notify) end
  if not ok then
    -- A peer may close its socket right after its close_notify (RFC 8446
    -- 6.1): both sides said goodbye, ours just found no one listening.
    -- (OpenSSL reports that as "closed" too: it already has the peer's.)
    if self.peer_closed and (code == "eof" or code == "syscall" or code == "closed") then
      return true
    end
    return nil, message, code
  end
  if not wait_for_peer then return true end
  while not self.peer_closed do
    local data
    data, message, code = read_core(self, deadline, CHUNK)
    if data then
      self.inbuf = self.inbuf .. data
    elseif code ~= "closed" then
      return nil, message, code
    end
  end
  return true
end

--- Closes: sends close_notify when the handshake finished (trying for at most
-- `close_timeout` seconds, without waiting for the peer's), frees the
-- connection and closes the transport. Idempotent.
-- @return true
function Stream:close()
  if self.closed then return true end
  if self.handshaken and not self.dead and not self.sent_close then
    local deadline = gettime() + self.close_timeout
    local own = op_deadline(self)
    if own and own < deadline then deadline = own end
    -- best effort, and never an error: a memory pipe waited on outside any
    -- coroutine raises, for one
    pcall(as_writer, self, deadline, send_close_notify)
  end
  self.closed = true
  self.conn:close()
  self.transport:close()
  return true
end

Stream.__close = Stream.close

function Stream:__tostring()
  if self.closed then return "lunatls.Stream (closed)" end
  return ("lunatls.Stream (%s)"):format(tostring(self.conn))
end

--- Is plaintext already here (buffered in the stream or in OpenSSL)? For
-- select-style code: LuaSocket's `select` asks `dirty()`.
function Stream:dirty()
  return not self.closed and (#self.inbuf > 0 or self.conn:pending() > 0)
end

--- The transport's descriptor, when it has one.
function Stream:getfd()
  if self.transport.getfd then return self.transport:getfd() end
  return -1
end

--- The dead stream's failure, if any: message, code.
function Stream:failure()
  if self.dead then return self.dead[1], self.dead[2] end
end

-- The connection's accessors, as the core documents them.
for _, name in ipairs {
  "version", "cipher", "alpn_selected", "server_name", "peer_certificate", "peer_chain",
  "verify_result", "session", "session_reused", "export_keying_material", "pending",
  "key_update",
} do
  Stream[name] = function(self, ...)
    check_open(self)
    local conn = self.conn
    return conn[name](conn, ...)
  end
end

return M
