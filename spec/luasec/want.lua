-- want-read and want-write with settimeout(0): a receive with nothing to read,
-- a send that fills the socket, then both resumed with partial results.
local ssl = require "ssl"
local socket = require "socket"
local c = require "luasec.common"
local P = {}

local SIZE = 4 * 1024 * 1024
-- The client's send and the server's receive buffer, fixed (which turns the
-- kernel's autotuning off): loopback's send buffer grows up to 4 MiB
-- (tcp_wmem) when left alone, and then took all SIZE bytes at once now and
-- then, so that the first send did not stop short.
local SOCKET_BUFFER = 64 * 1024

-- What the client sends: numbered lines, so that a byte sent twice, or
-- skipped, when a send resumes at an index shows (SIZE bytes).
local function upload()
  local lines = {}
  for k = 1, SIZE // 8 do lines[k] = string.format("%07d\n", k) end
  return table.concat(lines)
end

function P.server(port)
  local server = c.listen(port)
  local sock = assert(server:accept())
  assert(sock:setoption("recv-buffer-size", SOCKET_BUFFER))
  local conn = assert(ssl.wrap(sock, c.server_params()))
  c.out("handshake", conn:dohandshake())
  c.out("ready", conn:send("ready\n"))
  c.out("go", conn:receive("*l"))
  socket.sleep(0.5) -- the client fills its socket meanwhile
  local data, err = conn:receive(SIZE)
  c.out("received", data and #data, err, data == upload())
  c.out("send", conn:send("thanks\n"))
  conn:close()
end

function P.client(port)
  local sock = c.connect(port)
  assert(sock:setoption("send-buffer-size", SOCKET_BUFFER))
  local conn = assert(ssl.wrap(sock, c.client_params()))
  conn:sni("localhost")
  c.out("handshake", conn:dohandshake())
  conn:settimeout(5)
  c.out("line", conn:receive("*l"))
  conn:settimeout(0)
  c.out("nothing", conn:receive("*l"))
  c.out("want", conn:want())
  c.out("dirty", conn:dirty())
  conn:settimeout(5)
  c.out("go", conn:send("go\n"))
  conn:settimeout(0)
  local data = upload()
  local first, err, last = conn:send(data)
  c.out("first send", first, err, last and last > 0 and last < SIZE)
  c.out("want", conn:want())
  local i = last
  while i < SIZE do
    socket.select(nil, { conn }, 10)
    local sent, _, upto = conn:send(data, i + 1)
    i = sent or upto
  end
  c.out("all sent", i)
  conn:settimeout(0.3)
  local line, e, partial = conn:receive("*l")
  while e == "wantread" do line, e, partial = conn:receive("*l", partial) end
  c.out("answer", line, e)
  conn:close()
end

return P
