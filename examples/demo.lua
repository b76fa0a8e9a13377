--- lunatls demo: a TLS client and server, each in its own coroutine, talking
-- over BIO pairs inside one process. Every status is printed as it happens.
-- Run from the checkout: `make demo` (or `lua5.4 examples/demo.lua` after `make`).

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local tls = require "lunatls"

local fixtures = "spec/fixtures/"

local server_ctx = assert(tls.new_context {
  mode = "server",
  certificate = fixtures .. "server.pem",
  key = fixtures .. "server.key",
  alpn = { "h2", "http/1.1" },
})
local client_ctx = assert(tls.new_context {
  mode = "client",
  cafile = fixtures .. "ca.pem",     -- verify the server (and its host name)
  alpn = { "http/1.1", "h2" },
})

local client = client_ctx:new_conn { server_name = "localhost" }
local server = server_ctx:new_conn()

local function say(who, fmt, ...)
  print(string.format("%-7s " .. fmt, who, ...))
end

--- Calls `op` until it stops asking for I/O; yields to the other side while
-- it waits (that is all "nonblocking" needs to mean inside a coroutine).
local function drive(who, conn, op, ...)
  while true do
    local status, message, code = conn[op](conn, ...)
    if status == "want_read" or status == "want_write" then
      say(who, "%s -> %s", op, status)
      coroutine.yield()
    elseif status == nil and (message == "want_read" or message == "want_write") then
      coroutine.yield()
    else
      say(who, "%s -> %s", op, tostring(status or (message .. " [" .. tostring(code) .. "]")))
      return status, message, code
    end
  end
end

local function read_message(who, conn)
  while true do
    local data, status = conn:read()
    if data then return data end
    if status ~= "want_read" then error(who .. ": read failed: " .. tostring(status)) end
    coroutine.yield()
  end
end

local client_task = coroutine.wrap(function()
  assert(drive("client", client, "do_handshake") == "done")
  local cert = client:peer_certificate()
  say("client", "peer     %s (issued by %s)", cert:subject(), cert:issuer())
  say("client", "names    %s", table.concat(cert:subject_alt_names(), ", "))
  say("client", "verify   %s", select(2, client:verify_result()))
  say("client", "version  %s, cipher %s, ALPN %s", client:version(), client:cipher(),
      client:alpn_selected())
  assert(client:write("hello from the client") > 0)
  say("client", "got      %q", read_message("client", client))
  drive("client", client, "shutdown")  -- sends close_notify, then waits for the server's
  return "finished"
end)

local server_task = coroutine.wrap(function()
  assert(drive("server", server, "do_handshake") == "done")
  say("server", "SNI      %s, ALPN %s", server:server_name(), server:alpn_selected())
  local message = read_message("server", server)
  say("server", "got      %q", message)
  assert(server:write("hello back, " .. #message .. " bytes received") > 0)
  local data, status = server:read()
  while not data and status == "want_read" do
    coroutine.yield()
    data, status = server:read()
  end
  say("server", "read     -> nil, %s (the client's close_notify)", status)
  drive("server", server, "shutdown")
  return "finished"
end)

--- Moves what one side wrote to its network end into the other's.
local function wire(from, to)
  local bytes = from:bio():read()
  if bytes then assert(to:bio():write(bytes) == #bytes) end
end

local client_state, server_state
for _ = 1, 100 do
  if client_state ~= "finished" then client_state = client_task() end
  wire(client, server)
  if server_state ~= "finished" then server_state = server_task() end
  wire(server, client)
  if client_state == "finished" and server_state == "finished" then break end
end
assert(client_state == "finished" and server_state == "finished", "demo did not finish")
client:close()
server:close()
print("both sides closed cleanly with close_notify")
