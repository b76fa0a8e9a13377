--- LuaSocket TCP transport: TLS over a nonblocking LuaSocket socket
-- (`settimeout(0)`), waited on with the scheduler. The stream's connection
-- reads and writes the socket's descriptor itself (`attach`), checking
-- before each call that the socket still holds it; while LuaSocket holds
-- bytes it read ahead, the stream moves the bytes (`send_from`,
-- `receive_into`).
--
--     local transport = require "lunatls.transport.socket"
--     local t = assert(transport.connect("example.org", 443, deadline))
--     local stream = tls.wrap(t, ctx, { server_name = "example.org" })
--
-- The interface every transport implements is in docs/transports.md.
-- @module lunatls.transport.socket

local socket = require "socket"
local scheduler = require "lunatls.scheduler"

local M = {}

-- Largest read from the socket in one call.
local READ_MAX = 64 * 1024

-- The optional fast path of the interface (docs/transports.md): the driver
-- hands over the connection's network end, and the bytes go between its
-- ring and the socket in C (bio:send_to, bio:receive_from), with no Lua
-- string. The descriptor is asked for each time: a closed socket says -1.

--- Sends what the network end `net` holds, as much as the socket takes.
-- @return bytes sent (maybe 0), or nil, message, code
local function send_from(self, net)
  local fd = self.socket:getfd()
  if fd < 0 then return nil, "send: the socket is closed", "eof" end
  return net:send_to(fd)
end

--- Receives into the network end `net` what has arrived (no more than it
-- has room for, at most `max`).
-- @return bytes received (0: no room), or receive's failures
local function receive_into(self, net, max)
  local sock = self.socket
  -- LuaSocket's buffer fills only through its receive: before the stream
  -- began (a STARTTLS line read ahead) or in Transport:receive. Until one
  -- of those, asking it (sock:dirty(), a class check and a call) is skipped.
  if self.maybe_buffered then
    if sock:dirty() then
      -- bytes LuaSocket read earlier come first, through its buffer
      local room = net:write_guarantee()
      if room == 0 then return 0 end
      local data, status, code = self:receive(math.min(max or READ_MAX, room))
      if not data then return nil, status, code end
      return net:write(data)
    end
    self.maybe_buffered = false
  end
  local fd = sock:getfd()
  if fd < 0 then return nil, "receive: the socket is closed", "eof" end
  return net:receive_from(fd, max)
end

local Transport = {}
Transport.__index = Transport
Transport.__name = "lunatls.transport.socket"

--- Attached mode (docs/transports.md): `"fd"` and the socket, whose
-- descriptor OpenSSL then reads and writes itself, as over the fd
-- transport (no ring between, no Lua per record). The socket stays this
-- transport's, and the user's: the connection asks it for its descriptor
-- before each call (new_conn option `check_fd`), so a socket closed under
-- the stream fails the stream (code "eof") and never lets OpenSSL reach a
-- descriptor the system has given to another socket since.
-- Nil (the stream moves the bytes, `send_from`/`receive_into`): while
-- LuaSocket holds bytes it read ahead (a STARTTLS line's neighbours, which
-- must reach OpenSSL first), for an object that wraps a socket (its send
-- may do more), or a closed socket.
function Transport:attach()
  local sock = self.socket
  if type(sock) ~= "userdata" or sock:dirty() or sock:getfd() < 0 then return nil end
  return "fd", sock
end

--- Wraps a connected LuaSocket TCP socket. Sets it nonblocking and turns
-- Nagle's algorithm off (a TLS handshake is a ping-pong of small writes).
-- @param sock a connected LuaSocket TCP client socket
-- @tparam[opt] function wait_socket `function(sock, what, deadline)` that
-- suspends until `sock` is ready: how the transport waits (default
-- `lunatls.scheduler.wait_socket`; an event loop's adapter passes its own)
-- @treturn Transport
function M.new(sock, wait_socket)
  if type(sock) ~= "userdata" and type(sock) ~= "table" then
    error("bad argument #1 to 'new' (a LuaSocket TCP socket expected, got " .. type(sock) .. ")", 2)
  end
  sock:settimeout(0)
  sock:setoption("tcp-nodelay", true)
  local t = setmetatable({ socket = sock, wait_socket = wait_socket or scheduler.wait_socket,
                          maybe_buffered = true }, Transport)
  -- A LuaSocket socket itself (not an object that wraps one, whose send may
  -- do more): the driver moves bytes between it and the network end in C.
  if type(sock) == "userdata" then t.send_from, t.receive_into = send_from, receive_into end
  return t
end

--- Sends what the socket takes now.
-- @return bytes taken (maybe 0), or nil, message, code
function Transport:send(data)
  local n, err, last = self.socket:send(data)
  if n then return n end
  if err == "timeout" then return last end
  if err == "closed" then return nil, "send: the peer closed the connection", "eof" end
  return nil, "send: " .. err, "syscall"
end

--- Receives what has arrived, at most `max` bytes.
-- @return data, or nil, "want_read" (nothing yet), or nil, "closed" (end of
-- stream), or nil, message, code
function Transport:receive(max)
  self.maybe_buffered = true -- LuaSocket may keep what it read beyond max
  local data, err, partial = self.socket:receive(max or READ_MAX)
  if data then return data end
  if partial and partial ~= "" then return partial end -- the error comes next call
  if err == "timeout" then return nil, "want_read" end
  if err == "closed" then return nil, "closed" end
  return nil, "receive: " .. err, "syscall"
end

--- Waits until the socket is readable or writable (`what`: "read", "write").
-- @return true, or nil, "timeout"
function Transport:wait(what, deadline)
  return self.wait_socket(self.socket, what, deadline)
end

--- Shuts down the sending side (TCP FIN): the peer reads end of stream,
-- and can still send.
function Transport:shutdown_write()
  self.socket:shutdown("send")
end

--- The socket's descriptor (for other event loops).
function Transport:getfd()
  return self.socket:getfd()
end

--- Closes the socket.
function Transport:close()
  self.socket:close()
end

-- ---- TCP set-up that waits through the scheduler ----

-- A nonblocking connect finishes in the background; the socket turns
-- writable when it has. Asking again then tells how it went.
local function finish_connect(sock, host, port, deadline)
  local ok, err = sock:connect(host, port)
  if ok or err == "already connected" then return true end
  if err ~= "timeout" and err ~= "Operation already in progress" then return nil, err end
  -- Refused at once (a local port): known now, without a wait. libuv would
  -- report it as a poll error, which luv prints to stderr.
  local asked, refused = pcall(sock.getoption, sock, "error")
  if asked and refused then return nil, refused end
  local ready = scheduler.wait_socket(sock, "write", deadline)
  if not ready then return nil, "timeout" end
  ok, err = sock:connect(host, port)
  if ok or err == "already connected" then return true end
  return nil, err
end

--- Opens a TCP connection without blocking the scheduler (the name lookup
-- itself does block, as LuaSocket's does).
-- @tparam string host
-- @tparam number port
-- @tparam[opt] number deadline absolute time (`socket.gettime()`)
-- @return a Transport, or nil, message, code ("timeout" or "syscall")
function M.connect(host, port, deadline)
  local addresses, lookup_err = socket.dns.getaddrinfo(host)
  if not addresses then
    return nil, ("connect: %s: %s"):format(host, tostring(lookup_err)), "syscall"
  end
  local last = "no address"
  for _, address in ipairs(addresses) do
    local sock = address.family == "inet6" and socket.tcp6() or socket.tcp4()
    sock:settimeout(0)
    local ok, err = finish_connect(sock, address.addr, port, deadline)
    if ok then return M.new(sock) end
    sock:close()
    if err == "timeout" then return nil, "timeout", "timeout" end
    last = err
  end
  return nil, ("connect: %s port %s: %s"):format(host, tostring(port), last), "syscall"
end

-- accept() errors that pass: out of descriptors or memory, a client that
-- gave up before we took it. The server backs off and tries again.
local TRANSIENT = {
  ["Too many open files"] = true, ["Too many open files in system"] = true,
  ["No buffer space available"] = true, ["Cannot allocate memory"] = true,
  ["Software caused connection abort"] = true, ["connection aborted"] = true,
  ["Protocol error"] = true,
}
M.ACCEPT_BACKOFF = { first = 0.01, max = 1 }

--- Accepts one TCP client on a listening LuaSocket server socket, waiting
-- through the scheduler (or `wait_socket`). When the process is out of
-- descriptors (EMFILE, ENFILE) or memory it backs off (10 ms, doubling up
-- to 1 s) and tries again: overload delays accepting, never ends it.
-- @return a Transport, or nil, message, code ("timeout"; "closed" when the
-- listener was closed; "syscall")
-- `wait_socket` and `sleep` (seconds) default to the scheduler's.
function M.accept(listener, deadline, wait_socket, sleep)
  wait_socket = wait_socket or scheduler.wait_socket
  sleep = sleep or scheduler.sleep
  listener:settimeout(0)
  local backoff = M.ACCEPT_BACKOFF.first
  while true do
    local client, err = listener:accept()
    if client then return M.new(client, wait_socket) end
    if err == "closed" then return nil, "accept: closed", "closed" end
    local until_time
    if TRANSIENT[err] then
      until_time = socket.gettime() + backoff
      if deadline and deadline < until_time then until_time = deadline end
      backoff = math.min(backoff * 2, M.ACCEPT_BACKOFF.max)
      sleep(math.max(0, until_time - socket.gettime()))
    elseif err ~= "timeout" then
      return nil, "accept: " .. err, "syscall"
    elseif not wait_socket(listener, "read", deadline) then
      return nil, "timeout", "timeout"
    end
    if deadline and socket.gettime() >= deadline then return nil, "timeout", "timeout" end
  end
end

return M
