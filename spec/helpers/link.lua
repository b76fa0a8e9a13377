--- Drives a core connection over a real TCP socket (LuaSocket), the plain
-- blocking way, with a deadline: after every core call its network end is
-- flushed to the socket; on want_read bytes from the socket are fed in.
--
--     local link = require "helpers.link"
--     local l = link.new(conn, assert(link.connect(port)))
--     assert.equal("done", l:run(function() return conn:do_handshake() end))
--     l:write_all("GET / HTTP/1.0\r\n\r\n")
--     local body, status = l:read_all()        -- until close_notify or eof
--
-- @module helpers.link

local socket = require "socket"

local M = {}

--- A TCP connection to 127.0.0.1:`port` (nil, message on failure).
function M.connect(port, seconds)
  local sock = socket.tcp()
  sock:settimeout(seconds or 5)
  local ok, err = sock:connect("127.0.0.1", port)
  if not ok then
    sock:close()
    return nil, err
  end
  sock:settimeout(0)
  return sock
end

--- A listening socket on 127.0.0.1, and its port.
function M.listen()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  return server, assert(tonumber(port))
end

--- Accepts one connection within `seconds` (nil, "timeout" otherwise).
function M.accept(server, seconds)
  server:settimeout(seconds or 10)
  local sock, err = server:accept()
  if not sock then return nil, err end
  sock:settimeout(0)
  return sock
end

local Link = {}
Link.__index = Link

-- This process's id, read once: reading it opens a file, which would take
-- the number of a descriptor just closed.
local PID = (function()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return pid
end)()

--- Whether descriptor `fd` of this process is open (Linux: /proc), for
-- tests of who closes a descriptor.
function M.descriptor_open(fd)
  return os.execute(("test -L /proc/%d/fd/%d"):format(PID, math.tointeger(fd))) == true
end

--- Opens sockets until every free descriptor number below `fd` is taken,
-- so that the next socket opened once `fd` is closed gets `fd`'s number
-- (the lowest free one). Returns a function that closes them.
function M.take_numbers_below(fd)
  -- a socket object left to the collector would free its number later
  collectgarbage()
  collectgarbage()
  local held = {}
  while true do
    local sock = assert(socket.tcp4()) -- tcp() would open its descriptor only at connect or bind
    if sock:getfd() > fd then
      sock:close()
      return function() for _, s in ipairs(held) do s:close() end end
    end
    held[#held + 1] = sock
  end
end

--- Joins `conn` (which must own its BIO pair: `conn:bio()`) to `sock`.
function M.new(conn, sock)
  return setmetatable({ conn = conn, sock = sock, inbound = "", eof = false }, Link)
end

--- Sends everything the connection has written to the socket.
function Link:flush()
  local net = self.conn:bio()
  while true do
    local data = net:read()
    if not data then return end
    local sent = 0
    while sent < #data do
      local last, err, partial = self.sock:send(data, sent + 1)
      if last then
        sent = last
      elseif err == "timeout" then
        sent = partial
        socket.select(nil, { self.sock }, 1)
      else
        return -- the peer is gone: what it would have read is lost
      end
    end
  end
end

--- Feeds waiting socket bytes into the connection's network end, waiting up
-- to `seconds` for some. False when nothing came in time.
function Link:fill(seconds)
  local net = self.conn:bio()
  if self.inbound == "" and not self.eof then
    if #socket.select({ self.sock }, nil, seconds) == 0 then return false end
    local data, err, partial = self.sock:receive(16384)
    self.inbound = data or partial or ""
    if err == "closed" then self.eof = true end
  end
  local taken = net:write(self.inbound) or #self.inbound
  self.inbound = self.inbound:sub(taken + 1)
  if self.eof and self.inbound == "" then net:shutdown_write() end
  return true
end

--- Calls `step` (a function making one core call) until it returns anything
-- but a want status, flushing after each call and filling on want_read.
-- Returns what the last call returned, or nil, "link timeout", "timeout"
-- after `seconds` (default 10).
function Link:run(step, seconds)
  local deadline = socket.gettime() + (seconds or 10)
  while true do
    local results = table.pack(step())
    self:flush()
    local status = results[1] == nil and results[2] or results[1]
    if status == "want_read" then
      self:fill(math.max(0, deadline - socket.gettime()))
    elseif status ~= "want_write" then
      return table.unpack(results, 1, results.n)
    end
    if socket.gettime() > deadline then return nil, "link timeout", "timeout" end
  end
end

--- Runs the handshake to its end: "done", or nil, message, code.
function Link:handshake(seconds)
  return self:run(function() return self.conn:do_handshake() end, seconds)
end

--- Writes all of `data` (honouring partial writes); returns #data or nil, message, code.
function Link:write_all(data, seconds)
  local offset = 1
  while offset <= #data do
    local n, message, code = self:run(function() return self.conn:write(data:sub(offset)) end, seconds)
    if not n then return nil, message, code end
    offset = offset + n
  end
  return #data
end

--- Reads until the peer closes: returns everything read, then the final
-- status ("closed", or the error code of an eof or failure) and its message.
function Link:read_all(seconds)
  local parts = {}
  while true do
    local data, message, code = self:run(function() return self.conn:read() end, seconds)
    if not data then
      return table.concat(parts), code or message, message
    end
    parts[#parts + 1] = data
  end
end

--- Reads until `pattern` appears in what was read (or the peer closes).
function Link:read_until(pattern, seconds)
  local text = ""
  while not text:find(pattern) do
    local data, message, code = self:run(function() return self.conn:read() end, seconds)
    if not data then return text, code or message end
    text = text .. data
  end
  return text
end

--- Sends close_notify and waits for the peer's ("done"), or returns what
-- shutdown returned when the peer does not answer in `seconds` (default 2).
function Link:shutdown(seconds)
  local status = self:run(function()
    local result, message, code = self.conn:shutdown()
    if result == "want_read" and self.eof then return "want_read (peer gone)" end
    return result, message, code
  end, seconds or 2)
  return status
end

--- Closes the connection and the socket.
function Link:close()
  self.conn:close()
  self.sock:close()
end

return M
