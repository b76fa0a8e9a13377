--- With spec/44: luv loaded by one spec file is still usable by the next
-- (busted insulates files; see spec/helpers/preload.lua for luv's crash).
local socket = require "socket"

describe("luv across spec files (first file)", function()
  it("polls a socket with luv", function()
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
