--- A TLS echo server: one coroutine per client, all on the bundled
-- scheduler (libuv's epoll when lua-luv is installed, select otherwise),
-- every byte it receives sent straight back.
--
--     lua5.4 examples/echo_server.lua [port]          (after `make`; default 8443)
--     openssl s_client -connect 127.0.0.1:8443 -CAfile spec/fixtures/ca.pem
--
-- Loaded with `loadfile` (as the tests do) it runs nothing and returns
-- `{ serve = ..., handle = ... }` instead.

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local tls = require "lunatls"
local socket = require "socket"
local scheduler = require "lunatls.scheduler"
local socket_transport = require "lunatls.transport.socket"

local M = {}

--- Serves one client: handshake, echo until the client's close_notify, then
-- ours. Returns the bytes echoed, or nil, message, code.
function M.handle(stream)
  local ok, message, code = stream:handshake()
  if not ok then
    stream:close()
    return nil, message, code
  end
  local echoed = 0
  while true do
    local data
    data, message, code = stream:receive_some()
    if not data then break end
    ok, message, code = stream:send(data)
    if not ok then break end
    echoed = echoed + #data
  end
  if code == "closed" then stream:shutdown() end -- answer close_notify with ours
  stream:close()
  if code ~= "closed" then return nil, message, code end
  return echoed
end

--- Accepts clients on `listener` until it is closed, each in a task of its
-- own on `sched`.
-- @tparam table opts `timeout` (seconds per operation, default 30),
-- `handshake_timeout` (seconds, default the stream's 10),
-- `transport` (function(t) -> t, to wrap each accepted transport),
-- `on_done` (function(result, message, code), called per client)
-- Out of descriptors or memory, accept backs off and retries by itself;
-- the loop ends only when the listener is closed. A client's task that
-- raises (a bug, a callback) is reported by the scheduler, which aborts its
-- stream and goes on serving the others. The stream's defaults bound every
-- client: handshake 10 s, idle 60 s, a line 1 MiB (docs/coroutines.md).
function M.serve(sched, listener, ctx, opts)
  opts = opts or {}
  while true do
    local transport, message, code = socket_transport.accept(listener)
    if not transport then
      if code == "closed" then return message end -- the listener was closed
      sched:sleep(0.1) -- anything else: try again soon
    else
      if opts.transport then transport = opts.transport(transport) end
      local stream = tls.wrap(transport, ctx, { timeout = opts.timeout or 30,
                                                handshake_timeout = opts.handshake_timeout })
      sched:spawn(function()
        local result, why, why_code = M.handle(stream)
        if opts.on_done then opts.on_done(result, why, why_code) end
      end)
    end
  end
end

if ... ~= "--module" then
  local port = tonumber((...)) or 8443
  local ctx = assert(tls.new_context {
    mode = "server",
    certificate = "spec/fixtures/server.pem",
    key = "spec/fixtures/server.key",
  })
  local listener = assert(socket.bind("127.0.0.1", port, 128))
  local sched = scheduler.new()
  sched:spawn(M.serve, sched, listener, ctx, {
    on_done = function(echoed, message)
      print(echoed and ("client done: %d bytes echoed"):format(echoed) or ("client failed: " .. message))
    end,
  })
  print(("echo server on 127.0.0.1:%d (Ctrl-C stops it)"):format(port))
  sched:run()
end

return M
