-- A small HTTPS/1.0 server for the lunatls.luasec.https test: answers each
-- request with its method, path and body length, for `count` requests.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

local function serve(conn)
  local request = conn:receive("*l")
  local length = 0
  repeat
    local header = conn:receive("*l")
    local value = header and header:lower():match("^content%-length:%s*(%d+)")
    if value then length = tonumber(value) end
  until not header or header == ""
  local body = length > 0 and conn:receive(length) or ""
  local answer = ("%s body=%d"):format(request, #body)
  conn:send("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #answer
            .. "\r\n\r\n" .. answer)
end

function P.server(port)
  local server = c.listen(port)
  local ctx = assert(ssl.newcontext(c.server_params()))
  for _ = 1, tonumber(os.getenv("REQUESTS") or "1") do
    local sock = server:accept()
    if not sock then break end
    local conn = assert(ssl.wrap(sock, ctx))
    conn:settimeout(5)
    if conn:dohandshake() then serve(conn) end
    conn:close()
  end
end

return P
