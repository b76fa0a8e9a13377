--- cqueues transport: a LuaSocket TCP socket whose waits go through
-- cqueues (`cqueues.poll`), for programs built on cqueues. The stream runs in
-- a cqueues coroutine (`cq:wrap(fn)`); `wait` yields to the controller.
--
--     local cqueues = require "cqueues"
--     local cq_transport = require "lunatls.transport.cqueues"
--     local cq = cqueues.new()
--     cq:wrap(function()
--       local stream = tls.wrap(cq_transport.new(sock), ctx, { server_name = "localhost" })
--       assert(stream:handshake())
--       ...
--     end)
--     assert(cq:loop())
--
-- cqueues must forget a descriptor before it is closed: `close` calls
-- `cqueues.cancel` first.
-- @module lunatls.transport.cqueues

local cqueues = require "cqueues"
local socket = require "socket"
local socket_transport = require "lunatls.transport.socket"
local fd_transport = require "lunatls.transport.fd"

local gettime = socket.gettime

local M = {}

local EVENTS = { read = "r", write = "w", any = "rw" }

-- Waits through cqueues for `what` on `sock` until `deadline`.
local function cqueues_wait(sock, what, deadline)
  local fd = sock:getfd()
  if fd < 0 then return true end -- closed: the caller finds out by trying
  local pollable = { pollfd = fd, events = EVENTS[what] or "rw" }
  local ready
  if deadline then
    ready = cqueues.poll(pollable, math.max(0, deadline - gettime()))
  else
    ready = cqueues.poll(pollable)
  end
  if ready == pollable then return true end
  return nil, "timeout"
end

--- Wraps a connected LuaSocket TCP socket.
-- @return a transport for `tls.wrap`: the fd transport's (OpenSSL on the
-- descriptor), or the socket transport's when LuaSocket holds bytes read
-- ahead (`lunatls.transport.fd.fastest`); waits, pauses and close through
-- cqueues
function M.new(sock)
  if type(sock) ~= "userdata" or not sock.getfd then
    error("bad argument #1 to 'new' (a connected LuaSocket TCP socket expected, got "
          .. type(sock) .. ")", 2)
  end
  local transport = fd_transport.fastest(sock, cqueues_wait)
  function transport.pause()
    cqueues.sleep(0)
  end
  function transport.close(self)
    local fd = self.socket:getfd()
    if fd >= 0 then cqueues.cancel(fd) end
    self.socket:close()
  end
  return transport
end

--- Accepts one client of a LuaSocket listener, waiting through cqueues.
-- Out of descriptors it backs off and tries again (as
-- `lunatls.transport.socket.accept`).
-- @return a transport, or nil, message, code
function M.accept(listener, deadline)
  local transport, message, code = socket_transport.accept(listener, deadline, cqueues_wait, cqueues.sleep)
  if not transport then return nil, message, code end
  return M.new(transport.socket)
end

return M
