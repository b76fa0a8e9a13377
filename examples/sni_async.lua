--- Virtual hosts whose certificates are loaded on first use, without
-- stopping the server: the handshake pauses once the ClientHello is read
-- (client_hello = true), select_context runs in that connection's
-- coroutine and may wait (here it pretends to fetch from a slow store),
-- and the other connections go on meanwhile.
--
--     lua5.4 examples/sni_async.lua [dir]   (after `make`; dir: where <name>.pem and
--                                            <name>.key live; default spec/fixtures)
--
-- Each host name maps to a file name; a name with no file is refused
-- (alert unrecognized_name). Three clients ask for three names.

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local tls = require "lunatls"
local socket = require "socket"
local scheduler = require "lunatls.scheduler"

local DIR = (arg and arg[1] or "spec/fixtures") .. "/"
local FILES = { ["localhost"] = "server", ["wrong.example"] = "wronghost" }

local cache = {} -- host name -> context, or false (no such host)

--- The context for `name`, loaded once from DIR; the sleep stands for a
-- database or a secrets service: other connections run while we wait.
local function context_for(name)
  if cache[name] == nil then
    scheduler.sleep(0.1)
    local file = name and FILES[name]
    cache[name] = file and assert(tls.new_context {
      mode = "server", certificate = DIR .. file .. ".pem", key = DIR .. file .. ".key",
    }) or false
  end
  return cache[name]
end

local sched = scheduler.new()
local listener = assert(socket.bind("127.0.0.1", 0))
local _, port = listener:getsockname()
local pausing = assert(tls.new_context { mode = "server", client_hello = true })

sched:spawn(function()
  for _ = 1, 3 do
    local stream = tls.accept(listener, pausing, {
      select_context = function(hello) return context_for(hello.server_name) end,
    })
    if stream then
      sched:spawn(function()
        if stream:handshake() then stream:send("hello from " .. stream:server_name() .. "\n") end
        stream:close()
      end)
    end
  end
  listener:close()
end)

local client_ctx = assert(tls.new_context { mode = "client", cafile = DIR .. "ca.pem" })
for _, name in ipairs { "localhost", "wrong.example", "nobody.example" } do
  sched:spawn(function()
    local stream, message = tls.connect("127.0.0.1", port, client_ctx, { server_name = name })
    if not stream then return print(name .. ": refused: " .. message) end
    print(name .. ": " .. stream:peer_certificate():subject() .. ": " .. assert(stream:receive()))
    stream:close()
  end)
end
assert(sched:run(30))
