-- Nonblocking handshakes on both sides, waiting with socket.select as
-- dohandshake says; then nonblocking receive.
local ssl = require "ssl"
local socket = require "socket"
local c = require "luasec.common"
local P = {}

function P.server(port)
  local server = c.listen(port)
  local conn = assert(ssl.wrap(assert(server:accept()), c.server_params()))
  c.out("handshake", c.handshake_nonblocking(conn))
  c.out("want", conn:want())
  local got = {}
  while #table.concat(got) < 12 do
    local data, err, partial = conn:receive(12 - #table.concat(got))
    got[#got + 1] = data or partial
    if err == "wantread" then socket.select({ conn }, nil, 10) elseif err then c.out("error", err) break end
  end
  c.out("got", table.concat(got))
  conn:settimeout(5)
  c.out("send", conn:send("done\n"))
  c.out("final", conn:receive("*l"))
  conn:close()
end

function P.client(port)
  local conn = assert(ssl.wrap(c.connect(port), c.client_params()))
  conn:sni("localhost")
  c.out("handshake", c.handshake_nonblocking(conn))
  c.out("send", conn:send("twelve bytes"))
  local line, err
  repeat
    line, err = conn:receive("*l")
    if err == "wantread" then socket.select({ conn }, nil, 10) end
  until err ~= "wantread"
  c.out("line", line, err)
  conn:settimeout(nil)
  c.out("send", conn:send("bye\n"))
  conn:close()
end

return P
