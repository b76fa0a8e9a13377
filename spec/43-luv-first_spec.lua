--- With spec/44: luv loaded by one spec file is still usable by the next
-- (busted insulates files; see spec/helpers/preload.lua for luv's crash).
local poll_with_luv = require "helpers.luv_poll"

describe("luv across spec files (first file)", function()
  it("polls a socket with luv", function()
    poll_with_luv()
  end)
end)
