--- A transport decorator that moves at most `size` bytes per call, so the
-- TLS engine behind it sees the peer's bytes arrive `size` at a time (1: one
-- byte per core call).
--
--     local trickle = require "helpers.trickle"
--     local t = trickle.wrap(transport, 1)
--
-- @module helpers.trickle

local M = {}

local Trickle = {}
Trickle.__index = Trickle

--- Wraps `inner`; `receive_size` limits each receive, `send_size` (default:
-- no limit) each send.
function M.wrap(inner, receive_size, send_size)
  return setmetatable({ inner = inner, receive_size = receive_size, send_size = send_size,
                        receives = 0 }, Trickle)
end

function Trickle:receive(max)
  if self.receive_size and (not max or max > self.receive_size) then max = self.receive_size end
  local data, message, code = self.inner:receive(max)
  if data then self.receives = self.receives + 1 end
  return data, message, code
end

function Trickle:send(data)
  if self.send_size and #data > self.send_size then data = data:sub(1, self.send_size) end
  return self.inner:send(data)
end

function Trickle:wait(what, deadline)
  return self.inner:wait(what, deadline)
end

function Trickle:close()
  return self.inner:close()
end

function Trickle:getfd()
  return self.inner:getfd()
end

return M
