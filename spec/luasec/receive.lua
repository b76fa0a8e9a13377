-- receive patterns (lines with CR, counts, prefixes, "*a") and the partial
-- results of a close or a timeout in the middle of each.
local ssl = require "ssl"
local socket = require "socket"
local c = require "luasec.common"
local P = {}

local SCRIPTS = {
  "line one\r\nline\rtwo\nabcdefghij0123456789the rest\nuntil close",
  "no newline here",
  "1234567",
  "",
}

function P.server(port)
  local server = c.listen(port)
  local ctx = assert(ssl.newcontext(c.server_params()))
  for _, text in ipairs(SCRIPTS) do
    local conn = assert(ssl.wrap(assert(server:accept()), ctx))
    c.out("handshake", conn:dohandshake())
    c.out("send", conn:send(text))
    c.out("ack", conn:receive("*l"))
    conn:close()
  end
  -- a timeout in the middle of a line
  local conn = assert(ssl.wrap(assert(server:accept()), ctx))
  c.out("handshake", conn:dohandshake())
  c.out("send", conn:send("half a li"))
  socket.sleep(1.5) -- the client's 0.2 s receive times out meanwhile
  c.out("send", conn:send("ne\n"))
  c.out("ack", conn:receive("*l"))
  conn:close()
end

local function client_conn(port)
  local conn = assert(ssl.wrap(c.connect(port), c.client_params()))
  conn:sni("localhost")
  c.out("handshake", conn:dohandshake())
  return conn
end

function P.client(port)
  local conn = client_conn(port)
  c.out("l", conn:receive("*l"))
  c.out("l prefix", conn:receive("*l", "P:"))
  c.out("count", conn:receive(10))
  c.out("count prefix", conn:receive(6, "xy"))
  c.out("rest", conn:receive("*l"))
  c.out("ack", conn:send("ok\n"))
  c.out("all", conn:receive("*a"))
  c.out("after", conn:receive("*l"))
  conn:close()
  for _, pattern in ipairs { "*l", 10, "*a" } do
    conn = client_conn(port)
    c.out("ack", conn:send("ok\n"))
    c.out("pattern", pattern, conn:receive(pattern, "<"))
    conn:close()
  end
  conn = client_conn(port)
  conn:settimeout(0.2)
  local line, err, partial = conn:receive("*l")
  c.out("timeout", line, err, partial)
  conn:settimeout(5)
  c.out("resumed", conn:receive("*l", partial))
  c.out("ack", conn:send("ok\n"))
  conn:close()
end

return P
