--- LuaSocket TCP transport: the stream moves TLS bytes through a nonblocking
-- LuaSocket socket (`settimeout(0)`), and waits on it with the scheduler.
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

local Transport = {}
Transport.__index = Transport
Transport.__name = "lunatls.transport.socket"

--- Wraps a connected LuaSocket TCP socket. Sets it nonblocking and turns
-- Nagle's algorithm off (a TLS handshake is a ping-pong of small writes).
-- @param sock a connected LuaSocket TCP client socket
-- @treturn Transport
function M.new(sock)
  sock:settimeout(0)
  sock:setoption("tcp-nodelay", true)
  return setmetatable({ socket = sock }, Transport)
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
  return scheduler.wait_socket(self.socket, what, deadline)
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

--- Accepts one TCP client on a listening LuaSocket server socket, waiting
-- through the scheduler.
-- @return a Transport, or nil, message, code ("timeout" or "syscall")
function M.accept(listener, deadline)
  listener:settimeout(0)
  while true do
    local client, err = listener:accept()
    if client then return M.new(client) end
    if err ~= "timeout" then return nil, "accept: " .. err, "syscall" end
    if not scheduler.wait_socket(listener, "read", deadline) then
      return nil, "timeout", "timeout"
    end
  end
end

return M
