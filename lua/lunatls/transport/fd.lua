--- Descriptor transport: OpenSSL reads and writes the nonblocking socket
-- itself (`new_conn{fd = ...}`), so no bytes cross Lua; `"want_read"` and
-- `"want_write"` mean "wait until the descriptor is readable / writable".
--
--     local fd = require "lunatls.transport.fd"
--     local sock = assert(socket.connect("localhost", 443))  -- LuaSocket
--     local stream = tls.wrap(fd.new(sock), ctx, { server_name = "localhost" })
--
-- It is the fastest transport (one copy less, no Lua per record), at the price
-- of handing the socket to OpenSSL: do not read, write or close it yourself
-- while the stream uses it (close the stream). The connection holds the
-- descriptor's number: after a close behind its back, the system may give
-- that number to another socket, which the stream would then read and write.
-- The socket transport does the same as this one, with a check before each
-- call (a getfd()) that rules that out.
-- @module lunatls.transport.fd

local scheduler = require "lunatls.scheduler"

local M = {}

local Transport = {}
Transport.__index = Transport
Transport.__name = "lunatls.transport.fd"

-- select() and luv want an object with getfd(); a bare number gets a small
-- one, whose descriptor reads -1 once the stream closed it (as a closed
-- LuaSocket's does), so no backend watches a number the system reuses.
local Descriptor = { __index = { getfd = function(self) return self.fd end } }

local function pollable(fd)
  if type(fd) == "number" then return setmetatable({ fd = fd }, Descriptor) end
  return fd
end

local function check_socket(sock, name)
  if type(sock) ~= "userdata" and type(sock) ~= "table" then
    error(("bad argument #1 to '%s' (a socket expected, got %s)"):format(name, type(sock)), 3)
  end
end

-- Does LuaSocket hold bytes it read ahead (a STARTTLS line's neighbours)?
-- OpenSSL reads the descriptor and would never see them.
local function holds_unread(sock)
  return sock.dirty ~= nil and sock:dirty()
end

-- Bytes read ahead are refused, rather than lost.
local function check_unread(sock, name)
  if holds_unread(sock) then
    error(("bad argument #1 to '%s' (LuaSocket holds bytes it read ahead, which OpenSSL "
           .. "would never see: use fd.fastest or lunatls.transport.socket)"):format(name), 3)
  end
end

-- The transport of `sock`, already checked by the caller (new, fastest, adopt).
-- No settimeout(0): LuaSocket keeps every descriptor nonblocking in the
-- system (its timeouts are its own waits, in select or poll), so OpenSSL's
-- reads and writes on it never block, and this transport makes none of
-- LuaSocket's own calls that a timeout would govern.
local function make(sock, wait_socket)
  local socket_object
  if type(sock) ~= "number" then
    if sock.setoption then sock:setoption("tcp-nodelay", true) end
    socket_object = sock
  end
  return setmetatable({ fd = sock, socket = socket_object, pollable = pollable(sock),
                        wait_socket = wait_socket or scheduler.wait_socket }, Transport)
end

--- Wraps a connected socket: a LuaSocket TCP socket (nonblocking in the system, as LuaSocket keeps them),
-- or an integer descriptor already in nonblocking mode (its owner closes it).
-- @param sock a LuaSocket TCP socket, or an integer descriptor
-- @tparam[opt] function wait_socket how to wait, as for
-- `lunatls.transport.socket.new`
-- @treturn Transport with field `fd` (what `new_conn{fd=}` takes)
function M.new(sock, wait_socket)
  if type(sock) ~= "number" then
    check_socket(sock, "new")
    check_unread(sock, "new")
  end
  return make(sock, wait_socket)
end

--- The fastest transport for a LuaSocket socket: this one, unless LuaSocket
-- already holds bytes it read (a STARTTLS exchange read ahead): those must
-- reach OpenSSL first, which only the socket transport does (it feeds them
-- through its BIO pair). The event-loop adapters (cqueues, luv) use it.
-- @param sock a connected LuaSocket TCP socket
-- @tparam[opt] function wait_socket as for `new`
-- @return a transport of this module or of `lunatls.transport.socket`
function M.fastest(sock, wait_socket)
  check_socket(sock, "fastest")
  if holds_unread(sock) then
    return require("lunatls.transport.socket").new(sock, wait_socket)
  end
  return make(sock, wait_socket)
end

--- Like `new`, but the stream's connection takes the socket's descriptor:
-- once `tls.wrap` has made it, the LuaSocket object holds no descriptor
-- (drop it, and its ~9 KB with it: bench/README.md, memory) and the
-- connection closes the descriptor when it is freed (`close_fd`,
-- docs/api.md). If `tls.wrap` raises, the socket keeps its descriptor.
-- Without the socket there is no half-close (`shutdown`): closing sends
-- close_notify, then closes the descriptor.
-- @param sock a connected LuaSocket TCP socket
-- @tparam[opt] function wait_socket as for `new`
-- @treturn Transport
function M.adopt(sock, wait_socket)
  check_socket(sock, "adopt")
  check_unread(sock, "adopt")
  local transport = make(sock, wait_socket)
  local fd = math.tointeger(sock:getfd())
  if not fd or fd < 0 then error("bad argument #1 to 'adopt' (a connected socket expected)", 2) end
  transport.fd, transport.pollable, transport.close_fd = fd, pollable(fd), true
  return transport
end

--- The connection now owns the descriptor (adopt; tls.wrap calls it): the
-- socket object lets go of it.
function Transport:taken()
  self.socket:setfd(-1)
  self.socket = nil
end

--- Waits until the descriptor is readable or writable (`what`).
-- @return true, or nil, "timeout"
function Transport:wait(what, deadline)
  return self.wait_socket(self.pollable, what, deadline)
end

--- Shuts down the sending side of a LuaSocket socket (TCP FIN).
function Transport:shutdown_write()
  if self.socket and self.socket.shutdown then self.socket:shutdown("send") end
end

--- The descriptor.
function Transport:getfd()
  return self.pollable:getfd()
end

--- Closes a LuaSocket socket; a bare descriptor belongs to its owner, who
-- closes it (after adopt: the connection, which the stream closed first).
function Transport:close()
  if self.socket then self.socket:close() end
  if self.close_fd then self.pollable.fd = -1 end
end

return M
