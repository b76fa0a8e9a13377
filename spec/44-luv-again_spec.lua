--- With spec/43: luv loaded by the previous spec file is still usable here
-- (busted insulates files; see spec/helpers/preload.lua for luv's crash).
local poll_with_luv = require "helpers.luv_poll"

describe("luv across spec files (second file: the first module collected)", function()
  it("polls a socket with luv", function()
    collectgarbage()
    collectgarbage()
    poll_with_luv()
  end)
end)
