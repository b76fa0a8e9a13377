--- A TLS stream over a transport: every call looks blocking inside a
-- coroutine, and yields while it waits.
--
-- The driver (lunatls.driver) calls the C core, moves bytes and waits; this
-- module adds LuaSocket's receive patterns, the writer's and the reader's
-- turns, the limits a server needs against hostile peers, and the close
-- policy. See docs/coroutines.md.
--
-- Results: success values as documented per method; every failure is
-- `nil, message, code[, partial]` with `code` one of the core's codes
-- (`"verify"`, `"protocol"`, `"eof"`, `"closed"`, `"syscall"`, `"memory"`,
-- `"callback"`: the table is in docs/api.md, "Statuses and error codes"),
-- `"timeout"` (then the message is `"timeout"` too, and the stream stays
-- usable) or `"limit"` (a line or buffered input over its maximum). The
-- peer's close_notify ends reading only; a transport that stops taking bytes
-- ends writing only. Any other failure leaves the stream dead: every later
-- call returns the same failure.
-- @module lunatls.stream

local socket = require "socket"
local driver = require "lunatls.driver"
local scheduler = require "lunatls.scheduler"

local gettime = socket.gettime
local running = coroutine.running
-- every send and receive calls it: an upvalue, not a lookup in _ENV
local type = type
local TIMEOUT, CLOSED = driver.TIMEOUT, driver.CLOSED

local M = {}

-- Plaintext given to one conn:write: one TLS record, so a write that stops
-- short has committed the whole piece (OpenSSL then holds the record, and the
-- retry must offer the same bytes).
local CHUNK = 16384
local FAIR_SHARE = driver.FAIR_SHARE -- bytes moved (read or sent) without a wait: then the others run

--- The limits against hostile peers, and their defaults (docs/coroutines.md
-- has the table). `false` turns a limit off.
M.defaults = {
  handshake_timeout = 10,      -- seconds for the whole handshake
  idle_timeout = 60,           -- seconds one wait may last without progress
  close_timeout = 1,           -- seconds close() tries to deliver and linger
  max_line = 1024 * 1024,      -- bytes in one line ("*l", "*L")
  max_input = 16 * 1024 * 1024, -- bytes buffered by "*a" or ahead of the reader
}

-- Conn's write and read, taken from the first connection `wrap` makes (every
-- Conn has the same methods): the hot paths call them as upvalues, without
-- the method lookup through the userdata's metatable.
local conn_write, conn_read

local CONN_OPTIONS = { server_name = true, session = true, alpn = true, buffer_size = true }
local STREAM_OPTIONS = { timeout = true, deadline = true, close_timeout = true,
                         handshake_timeout = true, idle_timeout = true, max_line = true,
                         max_input = true, select_context = true }

local Stream = {}
Stream.__index = Stream
Stream.__name = "lunatls.Stream"

-- ---- state ----

local function check_open(self, level)
  if self.closed then error("attempt to use a closed lunatls.Stream", (level or 2) + 1) end
end

--- Records a fatal failure: the stream is dead, and says so from now on.
local function die(self, failure)
  if not self.dead then self.dead = failure end
  return failure:unpack()
end

--- Turns a driver failure into the stream's answer: a timeout leaves it
-- usable, so does a transport that stopped taking bytes (reading may go
-- on) and a close by another coroutine; anything else kills it.
local function fail(self, failure)
  if failure == TIMEOUT or failure == CLOSED or failure == self.driver.write_error then
    return failure:unpack()
  end
  return die(self, failure)
end

local function min_time(a, b)
  if not a then return b end
  if not b then return a end
  return a < b and a or b
end

--- The deadline of an operation starting now: the per-call timeout, or the
-- stream's deadline, whichever comes first.
local function op_deadline(self)
  local timeout = self.timeout
  if not timeout then return self.deadline end -- no clock read
  return min_time(self.deadline, gettime() + timeout)
end

--- The driver has moved its fair share without a wait: the other tasks run
-- first. Called before an operation starts, when it holds nothing.
-- @return true, or nil, Failure (the deadline passed meanwhile)
local function fair_turn(self)
  return self.driver:fair(0, op_deadline(self))
end

-- The task that used each stream last, held weakly both ways: a stream
-- must not keep a finished task's coroutine (and its stack) alive.
local last_owner = setmetatable({}, { __mode = "kv" })

--- Registers the stream with task `co` (scheduler.own): a task that
-- raises aborts the streams it used. Once per task in a row: callers
-- check `last_owner[self] ~= co` first (`own` does; send, receive and
-- receive_some inline that test: a call less per operation).
local function own_by(self, co)
  last_owner[self] = co
  scheduler.own(self)
end

--- Registers the stream with the running task (own_by).
local function own(self)
  local co = running()
  if last_owner[self] ~= co then own_by(self, co) end
end

-- A limit option: a positive number, or false (off); nil takes the default.
local function limit_option(opts, key)
  local value = opts[key]
  if value == nil then return M.defaults[key] or nil end
  if value == false then return nil end
  if type(value) ~= "number" or value <= 0 then
    error(("wrap: option '%s' must be a positive number or false"):format(key), 3)
  end
  return value
end

-- ---- construction ----

--- Wraps a transport: makes a connection of `ctx` on it.
-- @param transport see docs/transports.md
-- @param ctx a `lunatls.Context`
-- @tparam[opt] table opts connection options (`server_name`, `session`,
-- `alpn`, `buffer_size`) and stream options: `timeout` (seconds per call),
-- `deadline` (absolute time, `socket.gettime()` clock, for every call), and
-- the limits of `M.defaults`
-- @treturn Stream
function M.wrap(transport, ctx, opts)
  if type(transport) ~= "table" or type(transport.wait) ~= "function" then
    error("wrap: bad argument #1 (a transport expected: see docs/transports.md)", 2)
  end
  opts = opts or {}
  -- made with room for the usual five keys (what the transport adds below,
  -- a server_name): a table filled from empty grows three times on the way
  -- (~0.5 K instructions each). A Lua callback's error fails the connection
  -- (code "callback") instead of raising out of the method that ran: the
  -- stream and its driver call the connection without a protected call
  -- (~430 instructions each, two per message).
  local conn_opts = { fd = nil, close_fd = nil, read_ahead = nil, server_name = nil,
                      callback_errors = "return" }
  for key, value in pairs(opts) do
    if CONN_OPTIONS[key] then
      conn_opts[key] = value
    elseif not STREAM_OPTIONS[key] then
      error(("wrap: unknown option '%s'"):format(tostring(key)), 2)
    end
  end
  if transport.fd ~= nil then
    -- OpenSSL on the descriptor: read ahead, a recv per burst of records
    -- rather than two per record (the stream reads until "want_read" before
    -- it waits, so records read ahead never wait unseen)
    conn_opts.fd, conn_opts.close_fd, conn_opts.read_ahead = transport.fd, transport.close_fd, true
  elseif transport.attach then
    -- OpenSSL on the transport's own BIO (a memory pipe, which the driver
    -- kicks after each call) or socket (checked before each call: the
    -- socket stays the transport's); nil: the stream moves the bytes
    local option, value = transport:attach()
    if option then
      conn_opts[option], conn_opts.check_fd = value, option == "fd" or nil
      conn_opts.read_ahead = true -- as over a descriptor: a read per burst of records
    end
  end
  if opts.select_context ~= nil and type(opts.select_context) ~= "function" then
    error("wrap: bad option 'select_context' (a function expected)", 2)
  end
  local conn = ctx:new_conn(conn_opts)
  conn_write, conn_read = conn.write, conn.read
  if transport.close_fd then transport:taken() end -- the connection owns the descriptor now
  return setmetatable({
    conn = conn,
    driver = driver.new(conn, transport, limit_option(opts, "idle_timeout")),
    transport = transport,
    -- Fields that may be absent read false, not nil: a field missing from
    -- the table is looked up in the class (the metatable) too, ~120
    -- instructions per read on the hot paths.
    inbuf = "",               -- plaintext received, not yet returned
    retry = false,            -- the string OpenSSL holds half written: bytes
    retry_from = 0,           -- retry_from to retry_to of it (offsets, no copies)
    retry_to = 0,
    reader = false,           -- the coroutine receiving now
    timeout = opts.timeout,
    deadline = opts.deadline,
    close_timeout = limit_option(opts, "close_timeout") or 0,
    handshake_timeout = limit_option(opts, "handshake_timeout"),
    handshake_deadline = nil, -- set when the handshake starts
    max_line = limit_option(opts, "max_line") or math.huge,
    max_input = limit_option(opts, "max_input") or math.huge,
    select_context = opts.select_context, -- chooses the server context by the ClientHello
    handshaken = false,
    handshake_flushed = false,
    peer_closed = false,      -- the peer's close_notify has arrived
    sent_close = false,       -- our close_notify has gone out
    dead = false,             -- the Failure that killed the stream
    closed = false,
  }, Stream)
end

-- ---- the handshake ----

--- The ClientHello arrived at a context made with client_hello = true:
-- select_context(hello), in this coroutine (it may yield: look a
-- certificate up, sleep), returns a context, nil to keep this one, or false
-- to refuse the client. Its error, or a wrong result, fails this stream
-- only, with code "callback".
local function choose_context(self)
  if not self.select_context then return true end -- keep the context
  local ok, chosen = pcall(self.select_context, self.conn:client_hello())
  if ok and chosen ~= nil then ok, chosen = pcall(self.conn.set_context, self.conn, chosen) end
  if not ok then return nil, driver.failure("select_context: " .. tostring(chosen), "callback") end
  return true
end

--- do_handshake until it is done or fails, pausing for select_context.
local function drive_handshake(self, deadline)
  while true do
    local status, message, code = self.driver:drive(deadline, "do_handshake", true)
    if status ~= "want_certificate" then return status, message, code end
    local ok, failure = choose_context(self)
    if not ok then return nil, failure end
  end
end

--- Runs the handshake until done; every operation starts with it (and has
-- made the running task own the stream first).
local function handshake(self, deadline)
  if not self.handshaken then
    if self.handshake_timeout and not self.handshake_deadline then
      self.handshake_deadline = gettime() + self.handshake_timeout
    end
    deadline = min_time(deadline, self.handshake_deadline)
    local status, message, code = drive_handshake(self, deadline)
    if status ~= "done" then
      return fail(self, driver.is_failure(message) and message or driver.failure(message, code))
    end
    self.handshaken = true
  end
  -- The last flight (a client's Finished, a server's tickets) should reach
  -- the peer: once, and not by this coroutine when another is flushing
  -- already. Bytes the peer sends meanwhile are kept, so that a peer that
  -- sends before it reads cannot deadlock us. A transport that no longer
  -- takes bytes does not undo the handshake: the next write reports it.
  if not self.handshake_flushed and not self.driver:others_flush() then
    local ok, failure = self.driver:flush_reading(deadline, self.max_input)
    if not ok and failure ~= self.driver.write_error then return fail(self, failure) end
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
  if self.dead then return self.dead:unpack() end
  own(self)
  return handshake(self, op_deadline(self))
end

-- ---- writing ----

--- A conn:write result that is not a count: the failure it stands for.
local function write_failure(message, code)
  if driver.is_failure(message) then return message end
  if message == "closed" and code == nil then return driver.failure("send: closed", "closed") end
  return driver.failure(message, code)
end

--- Gives OpenSSL the write it holds half done (if any), until it has taken
-- it, then flushes.
local function finish_write(self, deadline)
  local drv = self.driver
  while self.retry do
    local n, message, code = drv:drive(deadline, "write", false, self.retry, self.retry_from, self.retry_to)
    if not n then return fail(self, write_failure(message, code)) end
    self.retry_from = self.retry_from + n
    if self.retry_from > self.retry_to then self.retry = false end
  end
  local ok, failure = drv:flush(deadline)
  if not ok then return fail(self, failure) end
  return true
end

--- Runs `fn(self, deadline, ...)` as the stream's only writer: a coroutine
-- that finds another one writing waits for its turn, so that each send goes
-- out whole and OpenSSL's pending write (`self.retry`) belongs to one call.
local function as_writer(self, deadline, fn, ...)
  local drv, me = self.driver, coroutine.running()
  -- A writer that died (raised, or was closed with coroutine.close) holds
  -- no turn; one abandoned while suspended holds it for good, so the wait
  -- keeps to the deadline even when the transport is ready at once.
  while drv.writer and drv.writer ~= me and coroutine.status(drv.writer) ~= "dead" do
    local ok, failure = drv:wait("write", deadline) -- lets the writer run
    if not ok then return failure:unpack() end
  end
  local outer = drv.writer
  drv.writer = me
  local a, b, c, d = fn(self, deadline, ...) -- a send's results: at most four
  drv.writer = outer
  return a, b, c, d
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
  -- finish_write ends with a flush: each record below goes into an empty
  -- network end, whole
  if ok then ok, message, code = finish_write(self, deadline) end
  if not ok then return nil, message, code, i - 1 end
  local pos = i
  while pos <= j do
    local last = pos + CHUNK - 1
    if last > j then last = j end
    -- from here on, the stream owes these bytes
    self.retry, self.retry_from, self.retry_to = data, pos, last
    local size = last - pos + 1
    pos = last + 1
    ok, message, code = finish_write(self, deadline)
    if ok then -- sent without a wait: the others' turn may be due
      local failure
      ok, failure = self.driver:fair(size, deadline)
      if not ok then message, code = failure.message, failure.code end
    end
    if not ok then return nil, message, code, pos - 1 end
  end
  return j
end

--- send's common case after a whole write to a BIO pair (the record waits in
-- the pair): push and flushed, specialised; the general calls cost ~2 K
-- instructions per send (callgrind, bench/README.md). Returns send's
-- results, or false when the general path must go on (it waits to flush).
local function push_now(self, drv, j)
  local pushed, failure
  if drv.direct then -- the record goes from the ring into the transport, in C
    pushed, failure = drv:push_direct()
  else
    pushed, failure = drv:push(op_deadline(self))
  end
  if not pushed then
    local _, message, code = fail(self, failure)
    return nil, message, code, j
  end
  if drv.out == "" and drv.net:pending() == 0 then return j end
  return false
end

--- send's common case after a write that did not take all of `data[i..j]`
-- (`n, status, code`: what `conn:write` returned). Returns send's results,
-- or false when the general path must go on: then `self.retry` holds what
-- OpenSSL may hold of the bytes.
local function write_short(self, data, i, j, n, status, code)
  if n == nil and status ~= "want_read" and status ~= "want_write" then
    -- failed outright: OpenSSL holds none of these bytes, the stream owes none
    local _, message, failed_code = fail(self, write_failure(status, code))
    return nil, message, failed_code, i - 1
  end
  if math.type(n) == "integer" then i = i + n end
  self.retry, self.retry_from, self.retry_to = data, i, j
  return false
end

--- Sends all of `data` (or `data:sub(i, j)`), as LuaSocket's `send`.
-- @return the index of the last byte sent (`j`, by default `#data`), or
-- `nil, message, code, last` where `last` is the index of the last byte
-- the stream took. After a timeout, bytes up to `last` will still go out
-- (before anything sent later): resend from `last + 1`.
-- Coroutines sending at once take turns: each send goes out whole.
function Stream:send(data, i, j)
  if self.closed then check_open(self) end
  if type(data) ~= "string" then
    error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2)
  end
  if i == nil and j == nil then i, j = 1, #data else i, j = span(data, i, j) end
  if self.dead then return nil, self.dead.message, self.dead.code, i - 1 end
  local co = running()
  if last_owner[self] ~= co then own_by(self, co) end
  -- The common case skips the writer's turn and the general loop: the
  -- stream is established and nobody else is writing (no writer, nothing
  -- owed to OpenSSL, nothing waiting to reach the transport). Inline: a
  -- call of its own cost ~230 instructions per send (callgrind), and so
  -- does the write: over a descriptor a whole write is all there is to do.
  local drv = self.driver
  if drv.moved >= FAIR_SHARE then
    local ok, failure = fair_turn(self)
    if not ok then return nil, failure.message, failure.code, i - 1 end
  end
  if i <= j and j - i < CHUNK and self.handshake_flushed and not self.retry and not drv.writer
     and (not drv.net -- over a descriptor nothing waits to reach the transport
          or not drv.sending and drv.flushing == 0 and drv.out == "" and not drv.write_error) then
    local n, status, code
    if i == 1 and j == #data then -- the whole string: conn:write reads no range
      n, status, code = conn_write(self.conn, data)
    else
      n, status, code = conn_write(self.conn, data, i, j)
    end
    local a, b, c, d
    if n == j - i + 1 then
      drv.moved = drv.moved + n
      if not drv.net then -- OpenSSL wrote it to the transport itself
        if drv.kicks and self.transport.waiting then self.transport:kick() end
        return j
      end
      a, b, c, d = push_now(self, drv, j)
    else -- (an attached pipe is kicked by the general path's next call, before any wait)
      a, b, c, d = write_short(self, data, i, j, n, status, code)
    end
    if a ~= false then return a, b, c, d end
    i = j + 1 -- the stream owes these bytes (self.retry): the general path completes them
  end
  local deadline = op_deadline(self)
  local last, message, code, sent = as_writer(self, deadline, send_span, data, i, j)
  if last == nil and sent == nil then sent = i - 1 end
  return last, message, code, sent
end

-- ---- reading ----

--- Reads what the connection has (at most `max` bytes), waiting for some.
-- @return data, or nil, message, code ("closed" after close_notify)
local function read_core(self, deadline, max)
  if self.peer_closed then return nil, "closed", "closed" end
  if self.dead then return self.dead:unpack() end
  if not self.handshaken then
    local ok, message, code = handshake(self, deadline)
    if not ok then return nil, message, code end
  end
  local data, message, code = self.driver:read(deadline, max)
  if data then return data end
  if message == "closed" and code == nil then
    self.peer_closed = true
    return nil, "closed", "closed"
  end
  return fail(self, driver.is_failure(message) and message or driver.failure(message, code))
end

--- Runs `fn(self, ...)` as the stream's only reader: a second coroutine
-- receiving at the same time is a mistake (both would get parts of the same
-- bytes), and raises.
local function as_reader(self, fn, arg1, arg2)
  local me, reader = running(), self.reader
  if reader and reader ~= me and coroutine.status(reader) ~= "dead" then
    error("receive: another coroutine is receiving from this stream (receive from one at a time)", 3)
  end
  self.reader = me
  local a, b, c, d = fn(self, arg1, arg2) -- a receive's results: at most four
  self.reader = reader -- the outer call's (the same coroutine's), or none
  return a, b, c, d
end

--- A failed receive: the bytes gathered stay buffered after a timeout (the
-- next receive returns them), and are handed over (`partial`) otherwise.
local function receive_failure(self, message, code)
  if code == "timeout" then return nil, message, code end
  local partial = self.inbuf
  self.inbuf = ""
  return nil, message, code, partial
end

--- Over a limit: the stream is dead (the peer broke the protocol's rules).
local function over_limit(self, what)
  local _, message, code = die(self, driver.failure("receive: " .. what, "limit"))
  return receive_failure(self, message, code)
end

--- The short path of receive(n) and receive_some, without a wait (so no
-- other coroutine can come between): when the stream is established, holds
-- nothing and nobody else is receiving, one read of at most `max` bytes;
-- over a BIO pair with a direct transport, what the transport holds is
-- moved in first (Driver:read_now). Returns what it brought, or false: then
-- the general path goes on (a failure repeats there: a failed connection
-- keeps saying so).
local function read_now(self, max)
  local drv = self.driver
  -- the turn first: the others may change what is tested next
  if drv.moved >= FAIR_SHARE and not fair_turn(self) then return false end
  if not (self.inbuf == "" and self.handshaken and not self.dead and not self.peer_closed
          and not self.reader) then
    return false
  end
  if drv.net then return drv:read_now(max) or false end -- the transport's bytes first
  local data = conn_read(self.conn, max)
  if drv.kicks and self.transport.waiting then self.transport:kick() end
  if not data then return false end
  drv.moved = drv.moved + #data
  return data
end

local function receive_count(self, deadline, count)
  if self.inbuf == "" then -- the common case: one read brings them all, no copy
    local data, message, code = read_core(self, deadline, count < CHUNK and count or CHUNK)
    if not data then return receive_failure(self, message, code) end
    if #data == count then return data end
    self.inbuf = data
  end
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

--- A line: the chunks gathered are searched once each (linear time), and
-- the line may be at most `max_line` bytes.
local function receive_line(self, deadline, keep_end)
  local parts, have, chunk = {}, 0, self.inbuf
  self.inbuf = ""
  while true do
    local eol = chunk:find("\n", 1, true)
    if eol then
      parts[#parts + 1] = chunk:sub(1, eol)
      self.inbuf = chunk:sub(eol + 1)
      if have + eol > self.max_line then return over_limit(self, "line longer than max_line") end
      local line = table.concat(parts)
      if keep_end then return line end
      return (line:gsub("\r?\n$", ""):gsub("\r", ""))
    end
    parts[#parts + 1] = chunk
    have = have + #chunk
    if have > self.max_line then
      self.inbuf = table.concat(parts)
      return over_limit(self, "line longer than max_line")
    end
    local message, code
    chunk, message, code = read_core(self, deadline, CHUNK)
    if not chunk then
      self.inbuf = table.concat(parts)
      return receive_failure(self, message, code)
    end
  end
end

local function receive_all(self, deadline)
  local parts, have = { self.inbuf }, #self.inbuf
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
    have = have + #data
    if have > self.max_input then
      self.inbuf = table.concat(parts)
      return over_limit(self, "input longer than max_input")
    end
  end
end

local function receive_pattern(self, pattern, deadline)
  if pattern == "*l" or pattern == "l" then
    return receive_line(self, deadline, false)
  elseif pattern == "*L" or pattern == "L" then
    return receive_line(self, deadline, true)
  end
  return receive_all(self, deadline)
end

local PATTERNS = { ["*l"] = true, l = true, ["*L"] = true, L = true, ["*a"] = true, a = true }

--- Receives, as LuaSocket's `receive`: `"*l"` (default; a line without its
-- end of line, CRs removed), `"*L"` (a line with its end of line), `"*a"`
-- (everything until the peer's close_notify), or a byte count. The Lua 5.4
-- spellings `"l"`, `"L"`, `"a"` work too. `prefix` is put before the result.
-- @return data, or `nil, message, code[, partial]`: after a timeout the bytes
-- received so far stay buffered for the next call; after any other failure
-- (`"closed"` included) they are returned as `partial`.
function Stream:receive(pattern, prefix)
  if self.closed then check_open(self) end
  pattern = pattern or "*l"
  local count = type(pattern) == "number" and pattern
  if count then
    if count < 0 or count % 1 ~= 0 then error("receive: bad byte count", 2) end
  elseif not PATTERNS[pattern] then
    error("receive: invalid pattern " .. tostring(pattern), 2)
  end
  local co = running()
  if last_owner[self] ~= co then own_by(self, co) end
  local data, message, code, partial
  if count then -- the common case, one call shorter
    data = count > 0 and read_now(self, count < CHUNK and count or CHUNK)
    if data then
      if #data == count then return prefix and prefix .. data or data end
      self.inbuf = data -- the general path gathers the rest
    end
    data, message, code, partial = as_reader(self, receive_count, op_deadline(self), count)
  else
    data, message, code, partial = as_reader(self, receive_pattern, pattern, op_deadline(self))
  end
  if data and prefix then data = prefix .. data end
  if not data and prefix and partial then partial = prefix .. partial end
  return data, message, code, partial
end

local function receive_some(self, max)
  if #self.inbuf > 0 then
    local data = self.inbuf:sub(1, max)
    self.inbuf = self.inbuf:sub(max + 1)
    return data
  end
  local data, message, code = read_core(self, op_deadline(self), max)
  if not data then return receive_failure(self, message, code) end
  return data
end

--- Receives whatever has arrived: between 1 and `max` (default 16384) bytes,
-- waiting only while there is nothing.
-- @return data, or nil, message, code
function Stream:receive_some(max)
  if self.closed then check_open(self) end
  max = max or CHUNK
  local co = running()
  if last_owner[self] ~= co then own_by(self, co) end
  local data = read_now(self, max)
  if data then return data end
  return as_reader(self, receive_some, max)
end

-- ---- closing ----

--- Sends close_notify (once), flushed to the transport.
local function send_close_notify(self, deadline)
  local ok, message, code = finish_write(self, deadline)
  if not ok then return nil, message, code end
  local drv, conn = self.driver, self.conn
  while not self.sent_close do
    local status
    status, message, code = conn:shutdown()
    drv:push(deadline)
    if status == "done" or status == "want_read" then
      self.sent_close = true
    elseif status == "want_write" then
      local waited, failure = drv:await(status, deadline)
      if not waited then return fail(self, failure) end
    else
      return fail(self, driver.failure(message, code))
    end
  end
  local flushed, failure = drv:flush(deadline)
  if not flushed then return fail(self, failure) end
  return true
end

--- Sends close_notify. With `wait_for_peer`, then waits for the peer's:
-- application data arriving meanwhile stays buffered for `receive`.
-- @return true, or nil, message, code
function Stream:shutdown(wait_for_peer)
  check_open(self)
  if self.dead then return self.dead:unpack() end
  own(self)
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
  return as_reader(self, function()
    while not self.peer_closed do
      local data
      data, message, code = read_core(self, deadline, CHUNK)
      if data then
        if #self.inbuf + #data > self.max_input then
          return over_limit(self, "input longer than max_input")
        end
        self.inbuf = self.inbuf .. data
      elseif code ~= "closed" then
        return nil, message, code
      end
    end
    return true
  end)
end

--- Lingers after our close_notify: reads (and drops) what the peer still
-- sends until its close_notify or end of stream, so that no unread bytes
-- make the kernel reset the connection before the peer has read ours.
local function linger(self, deadline)
  local transport = self.transport
  if transport.shutdown_write then transport:shutdown_write() end
  local reader = self.reader
  if reader and reader ~= coroutine.running() and coroutine.status(reader) ~= "dead" then
    return -- the reader reads: it will see the end
  end
  while not self.peer_closed do
    local data = read_core(self, deadline, CHUNK)
    if not data then return end
  end
end

--- Sends close_notify, half-closes, lingers: everything sent before arrives.
local function graceful_close(self, deadline)
  local ok = as_writer(self, deadline, send_close_notify)
  if ok then linger(self, deadline) end
end

--- Frees the connection and closes the transport at once: no close_notify,
-- no I/O. What `close` ends with; the scheduler uses it on a task that
-- raised. Idempotent.
-- @return true
function Stream:abort()
  if self.closed then return true end
  self.closed = true
  self.driver.closed = true
  self.conn:close()
  self.transport:close()
  return true
end

--- Closes gracefully when the handshake finished: sends close_notify,
-- shuts down the transport's write side, and reads until the peer's
-- close_notify or end of stream, for at most `close_timeout` seconds (so
-- that what `send` reported as sent arrives, and the peer reads our
-- close_notify); then frees the connection and closes the transport.
-- Idempotent; never raises.
-- @return true
function Stream:close()
  if self.closed then return true end
  if self.handshaken and not self.dead and not self.sent_close and self.close_timeout > 0 then
    local deadline = min_time(gettime() + self.close_timeout, op_deadline(self))
    -- best effort, and never an error: a memory pipe waited on outside any
    -- coroutine raises, for one
    pcall(graceful_close, self, deadline)
  end
  return self:abort()
end

Stream.__close = Stream.close

function Stream:__tostring()
  if self.closed then return "lunatls.Stream (closed)" end
  return ("lunatls.Stream (%s)"):format(tostring(self.conn))
end

-- What OpenSSL (or the BIO pair) holds may be only part of a record (it
-- read ahead, or the transport delivered half): only a read tells. What it
-- brings waits in the stream for the next receive; a failure counts, as a
-- receive reports it at once. While another coroutine reads, or before the
-- handshake, the answer stays "maybe".
local function read_held(self)
  if self.reader or not self.handshaken or self.dead or self.peer_closed then return true end
  local data, status = conn_read(self.conn, CHUNK)
  local drv = self.driver
  if drv.kicks and self.transport.waiting then self.transport:kick() end
  if data then
    if not drv.net then drv.moved = drv.moved + #data end -- as Driver:read counts
    self.inbuf = data
    return true
  end
  return status ~= "want_read"
end

--- May a receive give something without new bytes from the socket? Bytes
-- are here: plaintext in the stream, or in OpenSSL (decrypted, or whole
-- records read ahead), or whole records in the connection's BIO pair or the
-- driver's carry. For select-style code: LuaSocket's `select` asks
-- `dirty()`, and must not wait on the socket while it is true; nor may a
-- `dirty()` that stays true while only part of a record is here make that
-- code spin.
function Stream:dirty()
  if self.closed then return false end
  if #self.inbuf > 0 or self.driver.carry ~= "" then return true end
  return self.conn:has_pending() and read_held(self)
end

--- The transport's descriptor, when it has one.
function Stream:getfd()
  if self.transport.getfd then return self.transport:getfd() end
  return -1
end

--- The dead stream's failure, if any: message, code.
function Stream:failure()
  if self.dead then return self.dead.message, self.dead.code end
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
