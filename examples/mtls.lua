--- Mutual TLS: a server that demands a client certificate from its CA, and
-- three clients, each a coroutine in this one process: one with a good
-- certificate, one with none, one with a certificate from another CA.
--
--     lua5.4 examples/mtls.lua          (after `make`)

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local tls = require "lunatls"
local socket = require "socket"
local scheduler = require "lunatls.scheduler"
local socket_transport = require "lunatls.transport.socket"

local fixtures = "spec/fixtures/"

local server_ctx = assert(tls.new_context {
  mode = "server",
  certificate = fixtures .. "server.pem",
  key = fixtures .. "server.key",
  cafile = fixtures .. "ca.pem",   -- the CA client certificates must chain to
  verify = "require",              -- no certificate, no connection
})

--- A client context presenting `name`.pem/.key (or no certificate).
local function client_context(name)
  return assert(tls.new_context {
    mode = "client",
    cafile = fixtures .. "ca.pem",
    certificate = name and (fixtures .. name .. ".pem"),
    key = name and (fixtures .. name .. ".key"),
  })
end

--- Serves each client in a task of its own: greets it by its certificate.
local function serve(sched, listener, count)
  for _ = 1, count do
    local transport = assert(socket_transport.accept(listener))
    sched:spawn(function()
      local stream = tls.wrap(transport, server_ctx, { timeout = 10 })
      local ok, message = stream:handshake()
      if not ok then
        print("server: refused a client: " .. message)
      else
        local subject = stream:peer_certificate():subject()
        print("server: client certificate " .. subject)
        assert(stream:send("hello, " .. subject .. "\n"))
        stream:shutdown()
      end
      stream:close()
    end)
  end
end

--- Connects with the given certificate and prints what happens.
local function client(port, name)
  local who = name or "no certificate"
  local stream, message, code = tls.connect("localhost", port, client_context(name), { timeout = 10 })
  if not stream then
    print(("client (%s): handshake failed: %s [%s]"):format(who, message, code))
    return
  end
  -- TLS 1.3: the client finishes its handshake before the server has judged
  -- its certificate; a refusal arrives as an alert on the first read.
  local line, why, failure = stream:receive("*l")
  if line then
    print(("client (%s): %s"):format(who, line))
  else
    print(("client (%s): refused: %s [%s]"):format(who, why, failure))
  end
  stream:close()
end

local listener = assert(socket.bind("127.0.0.1", 0))
local _, port = listener:getsockname()
local sched = scheduler.new()
sched:spawn(serve, sched, listener, 3)
sched:spawn(function()
  client(port, "client")          -- signed by the CA: accepted
  client(port, nil)               -- none: "certificate required"
  client(port, "otherclient")     -- signed by another CA: unknown ca
end)
sched:run()
listener:close()
