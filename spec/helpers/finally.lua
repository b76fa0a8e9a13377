--- Makes busted's `finally` keep every function a test gives it.
--
-- busted 2.1 (Debian 12) keeps only the last: `finally(fn)` replaces the
-- one before, so a test that started a server, then a client, stopped the
-- client only, and a file removed in an earlier `finally` stayed in /tmp.
-- Here each test's `finally` collects its functions and busted gets one that
-- runs them all, the last given first (as teardowns unwind); one that raises
-- does not stop the others, and the first error is raised after them.
-- Loaded by both suite helpers (preload.lua, robust.lua); spec/42 checks it.

local busted = require "busted"

local function run_all(list)
  local first_error
  for i = #list, 1, -1 do
    local ok, err = pcall(list[i])
    if not ok and first_error == nil then first_error = err end
  end
  if first_error ~= nil then error(first_error, 0) end
end

busted.subscribe({ "test", "start" }, function(element)
  local set = element.env and element.env.finally
  if not set then return nil, true end
  local list = {}
  element.env.finally = function(fn)
    list[#list + 1] = fn
    if #list == 1 then set(function() run_all(list) end) end
  end
  return nil, true -- let the other subscribers run
end)
