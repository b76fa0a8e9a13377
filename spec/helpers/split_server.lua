--- A TLS server whose TCP segments the test chooses: a core connection with
-- its own BIO pair over a nonblocking LuaSocket socket, the bytes relayed by
-- `pump`. `send_split` sends a record in two writes, so that the peer holds
-- part of a record (what reading ahead, or a BIO pair, can leave behind).
--
--     local server = split_server.new(server_ctx, accepted_socket)
--     while not server:handshake_step() do scheduler.sleep(0.005) end
--     server:send_split("hello", 10, function() scheduler.sleep(0.3) end)
--
-- @module helpers.split_server

local M = {}

local Server = {}
Server.__index = Server

function M.new(ctx, sock)
  sock:settimeout(0)
  local conn = ctx:new_conn()
  return setmetatable({ conn = conn, net = conn:bio(), sock = sock }, Server)
end

--- Moves what waits each way (loopback takes a send whole).
function Server:pump()
  local out = self.net:read()
  if out and #out > 0 then assert(self.sock:send(out) == #out) end
  local data, _, partial = self.sock:receive(65536)
  data = data or partial
  if data and #data > 0 then assert(self.net:write(data) == #data) end
end

--- One handshake step, relayed; true once the handshake is done (its last
-- flight and the session tickets sent).
function Server:handshake_step()
  local status = assert(self.conn:do_handshake())
  self:pump()
  return status == "done"
end

--- Sends `text` as one record: its first `first` bytes, then `between()`,
-- then the rest.
function Server:send_split(text, first, between)
  assert(self.conn:write(text) == #text)
  local record = assert(self.net:read())
  assert(self.sock:send(record:sub(1, first)) == first)
  between()
  assert(self.sock:send(record:sub(first + 1)))
end

function Server:close()
  self.conn:close()
  self.sock:close()
end

return M
