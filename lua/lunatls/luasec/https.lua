--- LuaSec's `ssl.https` on lunatls: `request` as LuaSocket's `http.request`,
-- over TLS.
--
--     local https = require "lunatls.luasec.https"
--     local body, code = https.request("https://localhost:8443/")
--     local ok, code = https.request { url = "https://example.org/", sink = ltn12.sink.table(t),
--                                      cafile = "ca.pem" }
--
-- The request table also carries the TLS parameters (`newcontext`'s). Unlike
-- LuaSec, whose default is `verify = "none"`, the default here is `"peer"`
-- against the system's CAs, and the host name is checked (docs/luasec.md).
-- @module lunatls.luasec.https

local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local url = require "socket.url"
local ssl = require "lunatls.luasec"

local M = {
  _VERSION = ssl._VERSION,
  _COPYRIGHT = ssl._COPYRIGHT,
  PORT = 443,
  TIMEOUT = 60,
}

local DEFAULTS = { protocol = "any", verify = "peer" }

-- The TLS parameters of a request: its own, then the defaults; a client.
local function tls_params(request)
  local params = {}
  for key, value in pairs(request) do params[key] = value end
  for key, value in pairs(DEFAULTS) do
    if params[key] == nil then params[key] = value end
  end
  params.mode = "client"
  return params
end

-- A socket for socket.http: TCP connect, then TLS with SNI and the host check.
local Socket = {}
Socket.__index = Socket

function Socket:settimeout()
  return self.tcp:settimeout(M.TIMEOUT)
end

function Socket:connect(host, port)
  local ok, err = self.tcp:connect(host, port)
  if not ok then return nil, err end
  local conn, message = ssl.wrap(self.tcp, self.params)
  if not conn then return nil, message end
  conn:sni(host)
  conn:settimeout(M.TIMEOUT)
  ok, message = conn:dohandshake()
  if not ok then
    conn:close()
    return nil, message
  end
  self.conn = conn
  return 1
end

for _, name in ipairs { "send", "receive", "getfd", "dirty", "getpeercertificate",
                        "getpeerverification", "getalpn", "info" } do
  Socket[name] = function(self, ...) return self.conn[name](self.conn, ...) end
end

function Socket:close()
  if self.conn then return self.conn:close() end
  return self.tcp:close()
end

--- socket.http's `create` for these TLS parameters (LuaSec's `https.tcp`).
function M.tcp(params)
  params = tls_params(params or {})
  return function()
    local tcp, err = socket.tcp()
    if not tcp then return nil, err end
    return setmetatable({ tcp = tcp, params = params }, Socket)
  end
end

local function with_port(address)
  return url.build(url.parse(address, { port = M.PORT }))
end

-- The simple form: a URL (and a body to POST); the answer as a string.
local function simple_request(address, body, parts)
  local request = { url = with_port(address), method = body and "POST" or "GET",
                    sink = ltn12.sink.table(parts) }
  if body then
    request.source = ltn12.source.string(body)
    request.headers = { ["content-length"] = #body,
                        ["content-type"] = "application/x-www-form-urlencoded" }
  end
  return request
end

--- An HTTPS request, as `http.request`: a URL (and body), or a request
-- table with TLS parameters. Proxies, redirects and `create` are refused, as
-- in LuaSec.
-- @return body or 1, code, headers, status; or nil, message
function M.request(request, body)
  local parts, simple = {}, type(request) == "string"
  if simple then
    request = simple_request(request, body, parts)
  elseif type(request) == "table" then
    request.url = with_port(request.url)
  else
    error("bad argument #1 to 'request' (string or table expected, got " .. type(request) .. ")", 2)
  end
  if http.PROXY or request.proxy then return nil, "proxy not supported" end
  if request.redirect then return nil, "redirect not supported" end
  if request.create then return nil, "create function not permitted" end
  request.create = M.tcp(request)
  local result, code, headers, status = http.request(request)
  if result and simple then return table.concat(parts), code, headers, status end
  return result, code, headers, status
end

return M
