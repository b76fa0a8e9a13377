--- lunatls: TLS for Lua 5.4 over any transport, without blocking.
-- The C core (`lunatls.core`) plus the Lua conveniences.
-- @module lunatls

local core = require "lunatls.core"

local M = {}
for name, value in pairs(core) do
  M[name] = value
end

return M
