-- Two records that arrive together, read one receive at a time: the second
-- must not wait for new bytes, and socket.select must report the
-- connection readable between the two receives (through dirty() where the
-- record is no longer in the socket: lunatls.luasec reads ahead).
local ssl = require "ssl"
local socket = require "socket"
local c = require "luasec.common"
local P = {}

function P.server(port)
  local server = c.listen(port)
  local ctx = assert(ssl.newcontext(c.server_params()))
  local conn = assert(ssl.wrap(assert(server:accept()), ctx))
  c.out("handshake", conn:dohandshake())
  c.out("send", conn:send("first"))
  c.out("send", conn:send("second")) -- a record of its own
  c.out("ack", conn:receive("*l"))
  conn:close()
end

-- Whether select says `object` can be read now.
local function readable(object)
  local ready = socket.select({ object }, nil, 0)
  return ready[1] == object
end

function P.client(port)
  local conn = assert(ssl.wrap(c.connect(port), c.client_params()))
  conn:sni("localhost")
  c.out("handshake", conn:dohandshake())
  socket.sleep(0.3) -- both records are in the socket by now
  c.out("first", conn:receive(5))
  c.out("select", readable(conn))
  -- the descriptor alone: LuaSec left the second record in the socket,
  -- lunatls.luasec's one recv took both
  c.out("socket", readable({ getfd = function() return conn:getfd() end }))
  conn:settimeout(0) -- the second record must come without waiting
  c.out("second", conn:receive(6))
  conn:settimeout(10)
  c.out("ack", conn:send("[ok\n", 2)) -- a slice: the server reads "ok"
  conn:close()
end

return P
