--- Fuzz target: arbitrary bytes as the client's records, into a server
-- handshake (see fuzz/handshake.lua). Returns setup(core, fixtures) -> run.
local handshake = require "handshake"
return function(core, fixtures) return handshake.new("server", core, fixtures) end
