--- What the LuaSec-style programs share: fixtures, printing, sockets.
local socket = require "socket"

local M = {}

M.F = "spec/fixtures/"

--- Prints its arguments separated by tabs (tostring of each, nil included).
function M.out(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]) end
  io.write(table.concat(parts, "\t", 1, parts.n), "\n")
end

--- A listening socket on 127.0.0.1:port that gives up after 10 s.
function M.listen(port)
  local server = assert(socket.bind("127.0.0.1", port))
  server:settimeout(10)
  return server
end

--- A TCP connection to 127.0.0.1:port.
function M.connect(port)
  local sock = assert(socket.tcp())
  sock:settimeout(10)
  assert(sock:connect("127.0.0.1", port))
  return sock
end

--- Server parameters with the localhost certificate.
function M.server_params(extra)
  local params = { mode = "server", protocol = "any", key = M.F .. "server.key",
                   certificate = M.F .. "server.pem" }
  for k, v in pairs(extra or {}) do params[k] = v end
  return params
end

--- Client parameters verifying against the test CA.
function M.client_params(extra)
  local params = { mode = "client", protocol = "any", verify = "peer", cafile = M.F .. "ca.pem" }
  for k, v in pairs(extra or {}) do params[k] = v end
  return params
end

--- The fields of a table, sorted by key, as "k=v" words.
function M.fields(t)
  if type(t) ~= "table" then return tostring(t) end
  local keys, words = {}, {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do words[#words + 1] = k .. "=" .. tostring(t[k]) end
  return table.concat(words, " ")
end

--- Drives a nonblocking handshake: waits on the socket as `dohandshake`
-- says (wantread/wantwrite), as copas does. Returns its final result.
function M.handshake_nonblocking(conn)
  conn:settimeout(0)
  while true do
    local ok, err = conn:dohandshake()
    if ok then return true end
    if err == "wantread" then socket.select({ conn }, nil, 10)
    elseif err == "wantwrite" then socket.select(nil, { conn }, 10)
    else return false, err end
  end
end

return M
