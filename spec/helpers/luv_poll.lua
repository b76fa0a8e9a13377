--- spec/43 and spec/44: polls a listening socket with luv, the same way in
-- both files (see spec/helpers/preload.lua for why that can crash).
local socket = require "socket"

--- Creates, closes and runs off a luv poll handle; `pending()` when luv is
-- not installed.
return function()
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
end
