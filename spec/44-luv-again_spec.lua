--- With spec/43: luv loaded by the previous spec file is still usable here
-- (busted insulates files; see spec/helpers/preload.lua for luv's crash).
local socket = require "socket"

describe("luv across spec files (second file: the first module collected)", function()
  it("polls a socket with luv", function()
    collectgarbage()
    collectgarbage()
    local ok, uv = pcall(require, "luv")
    if not ok then
      pending("lua-luv is not installed")
      return
    end
    local sock = assert(socket.bind("127.0.0.1", 0))
    local poll = assert(uv.new_socket_poll(sock:getfd()))
    poll:close()
    uv.run("nowait")
    sock:close()
  end)
end)
