-- Runs one side of a LuaSec-style program (spec/luasec/<name>.lua) on one
-- implementation of the `ssl` module:
--   lua5.4 spec/luasec/run.lua luasec|lunatls <name> server|client <port>
-- "luasec" is Debian's lua-sec; "lunatls" preloads lunatls.luasec as `ssl`.
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local impl, name, role, port = arg[1], arg[2], arg[3], tonumber(arg[4])
if impl == "lunatls" then
  package.loaded.ssl = require "lunatls.luasec"
elseif impl ~= "luasec" then
  error("usage: run.lua luasec|lunatls <program> server|client <port>")
end
io.stdout:setvbuf("line")
local program = require("luasec." .. name)
program[role](port)
