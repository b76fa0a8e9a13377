--- Fetches a page over HTTPS from inside a coroutine.
--
--     lua5.4 examples/https_get.lua                  (after `make`)
--
-- starts a small HTTPS server coroutine on 127.0.0.1 and fetches its page,
-- both in this one process. Or fetch from any local HTTPS server:
--
--     openssl s_server -www -accept 127.0.0.1:4433 \
--         -cert spec/fixtures/server.pem -key spec/fixtures/server.key &
--     lua5.4 examples/https_get.lua https://localhost:4433/ spec/fixtures/ca.pem
--
-- (the second argument is the CA file to trust; without it, the system's).

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local tls = require "lunatls"
local socket = require "socket"
local scheduler = require "lunatls.scheduler"

--- Splits https://host[:port][/path].
local function parse_url(url)
  local host, port, path = url:match("^https://([^/:]+):?(%d*)(.*)$")
  assert(host, "not an https:// URL: " .. url)
  return host, tonumber(port) or 443, path ~= "" and path or "/"
end

--- GETs `url`; returns status, headers, body, or nil, message, code.
local function https_get(url, ctx)
  local host, port, path = parse_url(url)
  local stream, message, code = tls.connect(host, port, ctx, { timeout = 10 })
  if not stream then return nil, message, code end
  assert(stream:send(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"):format(path, host)))
  local status = stream:receive("*l")
  if not status then return nil, "no response" end
  local headers = {}
  while true do
    local line = assert(stream:receive("*l"))
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then headers[name:lower()] = value end
  end
  local body, why, failure, partial
  if headers["content-length"] then
    body, why, failure = stream:receive(tonumber(headers["content-length"]))
  else -- the body ends with the connection: close_notify says it is complete
    body, why, failure, partial = stream:receive("*a")
  end
  stream:close()
  if not body then
    return nil, ("body: %s (%s)%s"):format(why, failure,
      partial and (", " .. #partial .. " bytes arrived") or "")
  end
  return status, headers, body, stream
end

--- A one-page HTTPS server: answers `count` requests, then returns.
local function serve_page(listener, ctx, count)
  for _ = 1, count do
    local stream = assert(tls.accept(listener, ctx, { timeout = 10 }))
    local request = assert(stream:receive("*l"))
    repeat local header = assert(stream:receive("*l")) until header == ""
    local body = ("<h1>Hello from lunatls</h1>\n<p>You asked for %s over %s.</p>\n")
      :format(request:match("^GET (%S+)") or "?", stream:version())
    assert(stream:send(("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
      .. "Connection: close\r\n\r\n%s"):format(#body, body)))
    stream:close() -- close_notify
  end
end

local function print_response(status, headers, body)
  if not status then
    print("failed: " .. tostring(headers))
    return false
  end
  print(status)
  print(("content-type: %s"):format(headers["content-type"] or "?"))
  print(body)
  return true
end

local url, cafile = ...
local sched = scheduler.new()
local ok = true
if url then
  local ctx = assert(tls.new_context { mode = "client", cafile = cafile })
  sched:spawn(function() ok = print_response(https_get(url, ctx)) end)
else
  local listener = assert(socket.bind("127.0.0.1", 0))
  local _, port = listener:getsockname()
  local server_ctx = assert(tls.new_context {
    mode = "server", certificate = "spec/fixtures/server.pem", key = "spec/fixtures/server.key",
  })
  local client_ctx = assert(tls.new_context { mode = "client", cafile = "spec/fixtures/ca.pem" })
  sched:spawn(serve_page, listener, server_ctx, 1)
  sched:spawn(function()
    ok = print_response(https_get(("https://localhost:%d/index.html"):format(port), client_ctx))
  end)
end
sched:run()
os.exit(ok and 0 or 1)
