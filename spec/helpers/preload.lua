--- Loaded by busted (.busted's `helper`) once, before any spec file.
--
-- busted runs each spec file insulated: modules a file loads are dropped
-- from package.loaded when it ends. luv (1.44, Debian 12) does not survive
-- that: once its first module table is collected, its default loop is
-- closed, and a second `require "luv"` in the same Lua state hands out that
-- closed loop; the next poll handle crashes inside libuv (uv_poll_init).
-- Any spec that loads luv (spec/42's luv example, the scheduler's luv
-- backend) followed by another that polls with it (spec/40) segfaulted the
-- whole busted process (lunatls.scheduler.luv() anchors the module it
-- loads in the registry, but a spec that requires luv itself does not).
-- Loading luv here keeps one module for the whole run. spec/43 and spec/44
-- check that, in the suite's own order.
pcall(require, "luv")

require "helpers.finally"
