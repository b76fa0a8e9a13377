--- busted helper for `make asan`, `make valgrind` and `make gcstress`
-- (`--helper=spec/helpers/robust.lua`), chosen by LUNATLS_SANITIZER.
--
-- Every mode first makes sure the module under test is the one the target
-- built (LUNATLS_EXPECT_MODULE): a suite that silently loaded the plain
-- build would prove nothing. gcstress then turns the collector to its most
-- aggressive setting: incremental, pause 1% (a new cycle starts as soon as
-- one ends), step multiplier 1000 and step size 2^1 bytes (a large step of
-- work at every allocation); 0 would mean "unchanged" to collectgarbage.
-- That is about six complete cycles per handshake. It also runs a full
-- collection, twice so that finalized objects are freed too, after every
-- test and every file.

local busted = require "busted"
require "helpers.finally"

local mode = os.getenv("LUNATLS_SANITIZER")
local expected = os.getenv("LUNATLS_EXPECT_MODULE")

if expected then
  local found = package.searchpath("lunatls.core", package.cpath)
  local want = expected:gsub("^%./", "")
  if not found or found:gsub("^%./", "") ~= want then
    error(("robust.lua: lunatls.core resolves to %s, not %s"):format(tostring(found), expected))
  end
end

if mode == "gcstress" then
  collectgarbage("incremental", 1, 1000, 1)
  local function full_collection()
    collectgarbage("collect")
    collectgarbage("collect")
    return nil, true -- let the other subscribers run
  end
  busted.subscribe({ "test", "end" }, full_collection)
  busted.subscribe({ "file", "end" }, full_collection)
end

-- Under memcheck or the gcstress collector everything runs 10 to 50 times
-- slower: the stream's default time limits (set for real peers: a 10 s
-- handshake, a 60 s idle wait, a 1 s close) would measure the tool, not
-- the peer. They are scaled here; the module stays loaded (so scaled) for
-- every spec file, as busted restores package.loaded to this state.
local SLOWDOWN = { valgrind = 30, gcstress = 30 }
if SLOWDOWN[mode] then
  local defaults = require("lunatls.stream").defaults
  for _, key in ipairs { "handshake_timeout", "idle_timeout", "close_timeout" } do
    defaults[key] = defaults[key] * SLOWDOWN[mode]
  end
end

-- The luv backend once hung here (under gcstress in spec/24, under valgrind
-- in spec/23): uv.run("once") fired a timer that was already due and then
-- polled with no limit. Fixed in lunatls.scheduler (the timer repeats);
-- spec/24's "stale clock" test holds it.
