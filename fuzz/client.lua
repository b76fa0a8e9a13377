--- Fuzz target: arbitrary bytes as the server's records, into a client
-- handshake (see fuzz/handshake.lua). Returns setup(core, fixtures) -> run.
local handshake = require "handshake"
return function(core, fixtures) return handshake.new("client", core, fixtures) end
