--- LuaSec's connection object (`ssl.wrap(sock, ctx)`), on a lunatls
-- connection in fd mode: OpenSSL reads and writes the descriptor, and a
-- blocking timeout is a `socket.select` on it, as LuaSec waits with poll().
--
-- Results follow LuaSec and LuaSocket: `dohandshake()` is `true` or
-- `false, "wantread" | "wantwrite" | "closed" | message`; `receive` and `send`
-- return `nil, err, partial`. When a timeout expires (at once with
-- `settimeout(0)`), the error is `"wantread"` or `"wantwrite"`: the way the
-- connection is waiting, as LuaSec says it (copas relies on it).
-- @module lunatls.luasec.conn

local socket = require "socket"
local x509 = require "lunatls.luasec.x509"
local describe = require("lunatls.luasec.info").describe

local floor, max, min = math.floor, math.max, math.min

local M = {}

local Conn = {}
Conn.__index = Conn
Conn.__name = "SSL connection"

local READ_MAX = 16 * 1024
local WANT = { want_read = "read", want_write = "write" }
local WANT_ERROR = { want_read = "wantread", want_write = "wantwrite" }

-- The connection whose handshake step is running: the servername callback
-- of a server context finds its SNI map here (a step never yields).
local current

--- A server context's `servername` callback: the running connection's
-- `sni` map chooses the context; a strict map refuses unknown names.
function M.servername(name)
  local self = current
  if not self or not self.snimap then return nil end
  local target = self.snimap[name]
  if target then return target.ctx end
  if self.snistrict then return false end
  return nil
end

-- Gives the descriptor back to the LuaSocket object, which closes it.
local function release(self)
  if self.state == "closed" then return end
  self.state = "closed"
  if self.conn then self.conn:close() end
  if self.fd >= 0 then
    self.owner:setfd(self.fd)
    self.owner:close()
  end
  self.fd = -1
end

Conn.__gc = release

--- Takes over `sock`'s descriptor (LuaSec's `ssl.wrap`).
function M.new(sock, ctx)
  local fd = sock:getfd()
  if not fd or fd < 0 then return nil, "closed" end
  sock:setfd(-1)
  local self = setmetatable({
    ctx = ctx, owner = sock, fd = fd, buffer = "", tmode = "b", wanted = "nothing",
    received = 0, sent = 0, birthday = socket.gettime(), state = "new",
  }, Conn)
  self.pollable = { getfd = function() return self.fd end }
  return self
end

local function open(self)
  if not self.conn then
    -- Reading ahead (one recv per burst of records, not two per record) is
    -- safe here: `drive` waits on the socket only after a read said
    -- want_read, and `dirty` counts the records OpenSSL holds.
    self.conn = self.ctx.ctx:new_conn { fd = math.tointeger(self.fd), server_name = self.sniname,
                                        read_ahead = true }
  end
  return self.conn
end

-- One core call with the connection made current (for the SNI callback).
local function step(self, method, ...)
  current = self
  local ok, a, b, c = pcall(self.conn[method], self.conn, ...)
  current = nil
  if not ok then error(a, 0) end
  return a, b, c
end

-- The deadline of one call in "t" (total) mode; nil in "b" mode.
local function deadline_of(self)
  local t = self.timeout
  if self.tmode == "t" and t and t >= 0 then return socket.gettime() + t end
  return nil
end

-- Waits until the descriptor is ready for `status`; false on timeout.
local function wait(self, status, deadline)
  local t = self.timeout
  if t and t < 0 then t = nil end
  if deadline then t = max(0, deadline - socket.gettime()) end
  if t == 0 then return false end
  local r, w
  if status == "want_read" then r = { self.pollable } else w = { self.pollable } end
  local _, _, err = socket.select(r, w, t)
  return err ~= "timeout"
end

-- LuaSec's error text: OpenSSL's reason without lunatls's "<op>: " prefix
-- (a vanished peer: "unexpected eof while reading", as OpenSSL 3 says it).
local function luasec_error(message, code)
  if code == "closed" then return "closed" end
  if code == "eof" then return "unexpected eof while reading" end
  -- LuaSocket's word for a reset or aborted connection
  local text = tostring(message)
  if code == "syscall" and (text:find("reset by peer", 1, true) or text:find("abort", 1, true)) then
    return "closed"
  end
  if code == "verify" then return "certificate verify failed" end
  return (tostring(message):gsub("^[%w_]+: ", ""))
end

-- Runs `method` until it is not a want status or the timeout expires.
-- Returns the result, or nil, error word.
-- do_handshake and shutdown return a status first; read and write nil, status.
local STATUS_FIRST = { do_handshake = true, shutdown = true }

local function drive(self, method, deadline, ...)
  local status_first = STATUS_FIRST[method]
  local conn = self.conn
  local io = conn[method]
  while true do
    local result, message, code
    -- only a handshake step (or shutdown's) can reach the servername
    -- callback: reads and writes skip making the connection current
    if status_first then result, message, code = step(self, method, ...)
    else result, message, code = io(conn, ...) end
    if result ~= nil and not status_first then -- the common case: data, or bytes written
      self.wanted = "nothing"
      return result
    end
    local status = status_first and result or message
    if WANT[status] then
      self.wanted = WANT[status]
      if not wait(self, status, deadline) then return nil, WANT_ERROR[status] end
    elseif result == nil then
      -- OpenSSL leaves SSL_want() at reading (writing) after a failed read (write)
      self.wanted = method == "write" and "write" or "read"
      if message == "closed" then return nil, "closed" end
      return nil, luasec_error(message, code)
    else
      self.wanted = "nothing"
      return result
    end
  end
end

--- Runs the handshake (as long as the timeout allows).
-- @return true, or false, "wantread" | "wantwrite" | "closed" | message
function Conn:dohandshake()
  if self.state == "closed" or self.state == "failed" then return false, "closed" end
  if self.state == "done" then return true end
  open(self)
  local result, err = drive(self, "do_handshake", deadline_of(self))
  if result == "done" then
    self.state = "done"
    return true
  end
  if err ~= "wantread" and err ~= "wantwrite" then self.state = "failed" end
  return false, err
end

-- Appends the next decrypted bytes (at most `limit`, default READ_MAX) to
-- the buffer; nil, error word on failure.
local function fill(self, deadline, limit)
  local data, err = drive(self, "read", deadline, limit or READ_MAX)
  if not data then return nil, err end
  self.buffer = self.buffer .. data
  self.received = self.received + #data
  return true
end

-- The first `count` bytes of the buffer (the whole buffer without a copy
-- when that is all of it, as it is when a read brought what was asked).
local function take(self, count)
  local buffer = self.buffer
  if count >= #buffer then
    self.buffer = ""
    return buffer
  end
  self.buffer = buffer:sub(count + 1)
  return buffer:sub(1, count)
end

local function receive_line(self, deadline)
  while true do
    local eol = self.buffer:find("\n", 1, true)
    if eol then return (take(self, eol):sub(1, -2):gsub("\r", "")) end
    local ok, err = fill(self, deadline)
    if not ok then return nil, err, (take(self, #self.buffer):gsub("\r", "")) end
  end
end

-- Reads no more than the count lacks: a read that has what it was asked
-- for returns without asking the socket again (which would say EAGAIN).
local function receive_count(self, count, deadline)
  while #self.buffer < count do
    local ok, err = fill(self, deadline, min(count - #self.buffer, READ_MAX))
    if not ok then return nil, err, take(self, #self.buffer) end
  end
  return take(self, count)
end

-- LuaSocket: "*a" ends well at a close only if it got some bytes.
local function receive_all(self, deadline)
  local parts = {}
  while true do
    parts[#parts + 1] = take(self, #self.buffer)
    local ok, err = fill(self, deadline)
    if not ok then
      local data = table.concat(parts) .. take(self, #self.buffer)
      if err == "closed" and #data > 0 then return data end
      return nil, err, data
    end
  end
end

local function check_pattern(pattern)
  if pattern == nil then return "l" end
  if type(pattern) == "number" then
    if pattern < 0 then error("bad argument #1 to 'receive' (invalid receive pattern)", 3) end
    return floor(pattern)
  end
  local kind = type(pattern) == "string" and pattern:match("^%*([la])")
  if not kind then error("bad argument #1 to 'receive' (invalid receive pattern)", 3) end
  return kind
end

--- LuaSocket's receive: pattern `"*l"` (default), `"*a"` or a byte count
-- (which, as in LuaSocket, counts the prefix too), with an optional prefix.
-- @return data, or nil, err, partial
function Conn:receive(pattern, prefix)
  local kind = check_pattern(pattern)
  prefix = prefix or ""
  if self.state ~= "done" then return nil, "closed", prefix end
  local deadline = deadline_of(self)
  local data, err, partial
  if kind == "l" then data, err, partial = receive_line(self, deadline)
  elseif kind == "a" then data, err, partial = receive_all(self, deadline)
  else data, err, partial = receive_count(self, max(0, kind - #prefix), deadline) end
  if data then return prefix .. data, nil, nil end
  return nil, err, prefix .. partial
end

-- LuaSocket's (i, j) of send, clamped to the string.
local function send_range(size, i, j)
  i, j = floor(i or 1), floor(j or -1)
  if i < 0 then i = size + i + 1 end
  if j < 0 then j = size + j + 1 end
  if i < 1 then i = 1 end
  if j > size then j = size end
  return i, j
end

--- LuaSocket's send: bytes i..j of data.
-- @return the index of the last byte sent, or nil, err, last index sent
function Conn:send(data, i, j)
  if type(data) ~= "string" and type(data) ~= "number" then
    error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2)
  end
  local first, last
  if i == nil and j == nil and type(data) == "string" then -- the common case
    first, last = 1, #data
  else
    data = tostring(data)
    first, last = send_range(#data, i, j)
  end
  if self.state ~= "done" then return nil, "closed", first - 1.0 end
  local deadline, pos = deadline_of(self), first
  while pos <= last do
    local n, err = drive(self, "write", deadline, data, pos, last) -- no copy of the rest
    if not n then return nil, err, pos - 1.0 end
    pos = pos + n
    self.sent = self.sent + n
  end
  return last + 0.0, nil, nil
end

--- Timeout of each wait ("b", the default) or of the whole call ("t");
-- nil or negative blocks.
function Conn:settimeout(value, mode)
  if value ~= nil and type(value) ~= "number" then
    error("bad argument #1 to 'settimeout' (number expected, got " .. type(value) .. ")", 2)
  end
  self.timeout, self.tmode = value, (mode == "t" or mode == "total") and "t" or "b"
  return 1.0
end

-- At most this much of what the peer sent is read and dropped by close().
local CLOSE_DRAIN = 1024 * 1024

--- Reads and drops what the peer has sent already, without waiting. A
-- socket closed with unread bytes makes the kernel send a reset instead of a
-- FIN, and the peer's kernel may then drop what we sent last before the peer
-- reads it: a TLS 1.3 server's session tickets, never read by an
-- upload-only client, cost it the end of its upload (LuaSec loses it too).
local function drain(self)
  local dropped = 0
  while dropped < CLOSE_DRAIN do
    local ok, data = pcall(step, self, "read", READ_MAX)
    if not ok or not data then return end
    dropped = dropped + #data
  end
end

--- Sends close_notify once (without waiting for the peer's), takes what
-- the peer has sent already (see `drain`) and closes the socket; never
-- blocks.
function Conn:close()
  if self.state == "done" then
    pcall(step, self, "shutdown")
    drain(self)
  end
  release(self)
end

--- The descriptor (-1 once closed).
function Conn:getfd()
  return self.fd + 0.0
end

--- Sets the descriptor; only before the first handshake step.
function Conn:setfd(fd)
  if self.conn then return nil, "setfd: the connection already uses its descriptor" end
  self.fd = fd
end

--- True when a receive can give something without new bytes from the
-- socket (LuaSocket's select asks it, and then does not wait).
function Conn:dirty()
  if #self.buffer > 0 then return true end
  local conn = self.conn
  if conn == nil or self.state ~= "done" or not conn:has_pending() then return false end
  -- OpenSSL holds bytes it read ahead, maybe only part of a record: only a
  -- read tells (a true while part of a record waits would make a select
  -- loop spin). What it brings waits in the buffer; a failure counts, as
  -- the next receive reports it at once. The descriptor is nonblocking
  -- (LuaSocket's always are).
  local data, status = conn:read(READ_MAX)
  if not data then return status ~= "want_read" end
  self.buffer = data
  self.received = self.received + #data
  return true
end

--- "nothing", "read" or "write": what the last call waited for.
function Conn:want()
  return self.wanted
end

--- Client: the name to send (and, unlike LuaSec, to check the certificate
-- against). Server: a table name -> context, `strict` refuses other names.
function Conn:sni(names, strict)
  if self.ctx.mode == "client" then
    if type(names) ~= "string" then
      error("bad argument #1 to 'sni' (string expected, got " .. type(names) .. ")", 2)
    end
    self.sniname = names
  else
    if type(names) ~= "table" then
      error("bad argument #1 to 'sni' (table expected, got " .. type(names) .. ")", 2)
    end
    self.snimap, self.snistrict = names, strict and true or false
  end
end

--- The SNI name: what the client sent (server) or will send (client).
function Conn:getsniname()
  if self.conn and self.state ~= "closed" then return self.conn:server_name() or self.sniname end
  return self.sniname
end

local function handshaken(self)
  return self.state == "done" and self.conn
end

--- The peer's certificate (n = 1), or the n-th of its chain.
function Conn:getpeercertificate(n)
  n = n or 1
  local chain = self:getpeerchain()
  return chain and chain[n] or nil
end

--- The peer's certificate followed by the chain it sent, or nil.
function Conn:getpeerchain()
  local conn = handshaken(self)
  if not conn then return nil end
  local peer = conn:peer_certificate()
  if not peer then return nil end
  local list, chain = { x509.new(peer) }, conn:peer_chain()
  for k, cert in ipairs(chain) do
    if not (k == 1 and cert == peer) then list[#list + 1] = x509.new(cert) end
  end
  return list
end

-- Where in the chain OpenSSL's (final) verify error sits, as LuaSec indexes
-- it (depth + 1): a missing or untrusted issuer is found at the top of the
-- chain the peer sent, anything else at its own certificate.
local function error_index(conn, message)
  if message:find("issuer", 1, true) or message:find("in certificate chain", 1, true) then
    return max(1, #conn:peer_chain())
  end
  return 1
end

--- true when the peer's chain verified; else false and `{ [depth + 1] =
-- {reason} }` (lunatls keeps OpenSSL's final reason only).
function Conn:getpeerverification()
  local conn = handshaken(self)
  if not conn then return false, "closed" end
  local code, message = conn:verify_result()
  if code == 0 then return true end
  return false, { [error_index(conn, message)] = { message } }
end

local function not_available(name)
  return nil, name .. ": not available in lunatls (see docs/luasec.md)"
end

--- Not in lunatls: nil, reason (use `exportkeyingmaterial`).
function Conn.getfinished() return not_available("getfinished") end
--- Not in lunatls: nil, reason (use `exportkeyingmaterial`).
function Conn.getpeerfinished() return not_available("getpeerfinished") end
--- Not in lunatls: nil, reason.
function Conn.getlocalcertificate() return not_available("getlocalcertificate") end
--- Not in lunatls: nil, reason.
function Conn.getlocalchain() return not_available("getlocalchain") end
--- DANE is not in lunatls: nil, reason.
function Conn.setdane() return not_available("setdane") end
--- DANE is not in lunatls: nil, reason.
function Conn.settlsa() return not_available("settlsa") end

--- The negotiated ALPN protocol, or nil.
function Conn:getalpn()
  local conn = handshaken(self)
  return conn and conn:alpn_selected() or nil
end

--- The cipher and protocol (`field` picks one), as LuaSec's `info`.
function Conn:info(field)
  local conn = handshaken(self)
  if not conn then return nil end
  local info = describe(conn:cipher(), conn:version())
  if field then return info and info[field] end
  return info
end

--- RFC 5705 exporter.
function Conn:exportkeyingmaterial(label, length, context)
  local conn = handshaken(self)
  if not conn then return nil, "closed" end
  return conn:export_keying_material(label, length, context)
end

--- Bytes received, bytes sent, seconds since the connection was made.
function Conn:getstats()
  return self.received + 0.0, self.sent + 0.0, socket.gettime() - self.birthday
end

--- Sets the counters that `getstats` reports.
function Conn:setstats(received, sent, age)
  self.received = received or self.received
  self.sent = sent or self.sent
  if age then self.birthday = socket.gettime() - age end
  return 1.0
end

--- The lunatls connection underneath (lunatls extension), nil before use.
function Conn:lunatls()
  return self.conn
end

Conn.__tostring = function(self)
  return ("SSL connection: %p%s"):format(self, self.state == "closed" and " (closed)" or "")
end

return M
