--- Descriptor transport: OpenSSL reads and writes the nonblocking socket
-- itself (`new_conn{fd = ...}`), so no bytes cross Lua; `"want_read"` and
-- `"want_write"` mean "wait until the descriptor is readable / writable".
--
--     local fd = require "lunatls.transport.fd"
--     local sock = assert(socket.connect("localhost", 443))  -- LuaSocket
--     local stream = tls.wrap(fd.new(sock), ctx, { server_name = "localhost" })
--
-- It is the fastest transport (one copy less, no Lua per record), at the price
-- of handing the socket to OpenSSL: do not read or write it yourself while
-- the stream uses it.
-- @module lunatls.transport.fd

local scheduler = require "lunatls.scheduler"

local M = {}

local Transport = {}
Transport.__index = Transport
Transport.__name = "lunatls.transport.fd"

-- select() wants an object with getfd(); a bare number gets a small one.
local function pollable(fd)
  if type(fd) == "number" then
    return { getfd = function() return fd end }
  end
  return fd
end

--- Wraps a connected socket: a LuaSocket TCP socket (made nonblocking here),
-- or an integer descriptor already in nonblocking mode.
-- @param sock a LuaSocket TCP socket, or an integer descriptor
-- @tparam[opt] function wait_socket how to wait, as for
-- `lunatls.transport.socket.new`
-- @treturn Transport with field `fd` (what `new_conn{fd=}` takes)
function M.new(sock, wait_socket)
  if type(sock) ~= "number" then
    if type(sock) ~= "userdata" and type(sock) ~= "table" then
      error("bad argument #1 to 'new' (a socket or a descriptor expected, got " .. type(sock) .. ")", 2)
    end
    sock:settimeout(0)
    if sock.setoption then sock:setoption("tcp-nodelay", true) end
  end
  return setmetatable({ fd = sock, pollable = pollable(sock),
                        wait_socket = wait_socket or scheduler.wait_socket }, Transport)
end

--- Waits until the descriptor is readable or writable (`what`).
-- @return true, or nil, "timeout"
function Transport:wait(what, deadline)
  return self.wait_socket(self.pollable, what, deadline)
end

--- Shuts down the sending side of a LuaSocket socket (TCP FIN).
function Transport:shutdown_write()
  if type(self.fd) ~= "number" and self.fd.shutdown then self.fd:shutdown("send") end
end

--- The descriptor.
function Transport:getfd()
  return self.pollable:getfd()
end

--- Closes a LuaSocket socket; a bare descriptor belongs to its owner, who
-- closes it.
function Transport:close()
  if type(self.fd) ~= "number" then self.fd:close() end
end

return M
