--- A client and a server connection in one process, joined through their
-- network BIO ends, and the loops that drive them: every byte crosses
-- explicitly, so a spec sees each status the core returns.
--
--     local pair = require "helpers.pair"
--     local p = pair.new()                      -- default contexts
--     local result = p:handshake()
--     assert.same({ "done", "done" }, { result.client.status, result.server.status })
--     assert.equal("hello", p:send(p.client, p.server, "hello"))
--
-- @module helpers.pair

local tls = require "lunatls"

local M = {}

local FIXTURES = "spec/fixtures/"

--- The path of a fixture file.
function M.fixture(name)
  return FIXTURES .. name
end

--- The contents of a fixture file.
function M.read_fixture(name)
  local file = assert(io.open(M.fixture(name), "rb"))
  local text = file:read("a")
  file:close()
  return text
end

--- Copies `defaults`, then `overrides` on top.
local function merged(defaults, overrides)
  local result = {}
  for key, value in pairs(defaults) do result[key] = value end
  for key, value in pairs(overrides or {}) do result[key] = value end
  return result
end

--- A server context with the fixture server certificate (asserts success).
function M.server_context(opts)
  return assert(tls.new_context(merged({
    mode = "server",
    certificate = M.fixture("server.pem"),
    key = M.fixture("server.key"),
  }, opts)))
end

--- A client context trusting the fixture CA (asserts success).
function M.client_context(opts)
  return assert(tls.new_context(merged({
    mode = "client",
    cafile = M.fixture("ca.pem"),
  }, opts)))
end

--- A server context with the fixture certificate and key `name`
-- ("wronghost": CN=wrong.example), and `opts` on top.
function M.server_context_with(name, opts)
  return M.server_context(merged({ certificate = M.fixture(name .. ".pem"), key = M.fixture(name .. ".key") },
    opts))
end

--- A client context that trusts the fixture CA but checks no host name:
-- for names that are SNI only (a.test, b.test).
function M.sni_client_context(opts)
  return M.client_context(merged({ check_hostname = false }, opts))
end

--- The error `fn` raises (raises itself when `fn` does not).
function M.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("expected an error, none was raised", 2) end
  return err
end

--- Asserts that `fn` raises "bad argument #`argn` to '<...>`name`' (`reason`)".
-- The function's name is checked by its last part: Lua spells it
-- 'lunatls.new_context' or 'new_context' depending on how it finds it.
function M.assert_bad_argument(fn, argn, name, reason)
  local err = M.error_of(fn)
  if type(err) == "string" then
    err = err:gsub("^[^\n]-:%d+: ", "", 1) -- the position luaL_error may add
  end
  local prefix = ("^bad argument #%d to '[%%w_.]*%s' %%("):format(argn, name)
  if type(err) ~= "string" or not err:match(prefix) or err:sub(-#reason - 1) ~= reason .. ")" then
    error(("expected bad argument #%d to '%s' (%s), got: %s"):format(argn, name, reason, tostring(err)), 2)
  end
end

local Pair = {}
Pair.__index = Pair

--- Makes one side: a connection and the network end the pair moves bytes
-- through. `size` (optional) puts the connection on a BIO pair of that size
-- given as `bio=`; otherwise it uses its own (`conn:bio()`).
local function new_side(name, ctx, conn_opts, size)
  local side = { name = name, statuses = {}, finished = false }
  if size then
    local inner, outer = tls.new_bio_pair(size)
    conn_opts = merged(conn_opts, { bio = inner })
    side.net = outer
  end
  side.conn = ctx:new_conn(conn_opts)
  side.net = side.net or side.conn:bio()
  side.carry = "" -- bytes read from this side, not yet taken by the other
  return side
end

--- Makes a pair. Options (all optional):
-- `client_ctx`, `server_ctx` (default: `client_context()`, `server_context()`),
-- `client`, `server` (new_conn options; the client's default is
-- `{server_name = "localhost"}`), `client_size`, `server_size` (BIO pair size
-- given as `bio=`, see `new_side`).
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ steps = 0 }, Pair)
  self.client = new_side("client", opts.client_ctx or M.client_context(),
    opts.client or { server_name = "localhost" }, opts.client_size)
  self.server = new_side("server", opts.server_ctx or M.server_context(),
    opts.server or {}, opts.server_size)
  self.client.peer, self.server.peer = self.server, self.client
  return self
end

--- Moves what `from` has sent towards its peer, as far as the peer's buffer
-- takes it (the rest waits in `from.carry`). Returns the bytes delivered.
local function flow(from)
  local data = from.net:read()
  if data then from.carry = from.carry .. data end
  if from.carry == "" then return 0 end
  local taken = from.peer.net:write(from.carry)
  if not taken then -- the peer's end is closed: drop what it cannot take
    from.carry = ""
    return 0
  end
  from.carry = from.carry:sub(taken + 1)
  return taken
end

--- Moves bytes both ways until nothing moves; returns the total moved.
function Pair:pump()
  local total = 0
  repeat
    local moved = flow(self.client) + flow(self.server)
    total = total + moved
  until moved == 0
  return total
end

--- One do_handshake on a side that has not finished; records the status
-- (or the error code) in `side.statuses`.
local function handshake_step(side)
  if side.finished then return false end
  local status, message, code = side.conn:do_handshake()
  side.statuses[#side.statuses + 1] = status or code
  if status == "done" then
    side.finished, side.status = true, "done"
  elseif status == nil then
    side.finished, side.status, side.message, side.code = true, nil, message, code
  end
  return true
end

--- Runs both handshakes, pumping bytes after every call, until both have
-- finished (done or failed), nothing changes any more, or `limit` rounds
-- (default 50). Returns `{client = result, server = result, rounds = n}` with
-- result = `{status =, message =, code =, statuses = {...}}`.
function Pair:handshake(limit)
  local rounds = 0
  for round = 1, limit or 50 do
    rounds = round
    local called = handshake_step(self.client)
    local moved = self:pump()
    called = handshake_step(self.server) or called
    moved = moved + self:pump()
    if self.client.finished and self.server.finished then break end
    -- one side failed and the other waits for bytes that never come
    if moved == 0 and (self.client.code or self.server.code) then
      handshake_step(self.client)
      handshake_step(self.server)
      break
    end
    if not called then break end
  end
  local function result(side)
    return { status = side.status, message = side.message, code = side.code,
             statuses = side.statuses }
  end
  return { client = result(self.client), server = result(self.server), rounds = rounds }
end

--- Handshake that must succeed on both sides (raises with the messages otherwise).
function Pair:connect(limit)
  local result = self:handshake(limit)
  if result.client.status ~= "done" or result.server.status ~= "done" then
    error(("handshake failed: client %s (%s), server %s (%s)"):format(
      tostring(result.client.code), tostring(result.client.message),
      tostring(result.server.code), tostring(result.server.message)), 2)
  end
  return self
end

--- Sends `data` from side `from` to its peer through their connections,
-- honouring partial writes (the next write starts with the bytes not taken)
-- and pumping between calls. Returns what the peer read (everything, unless
-- `limit` rounds pass first), and the list of write results seen.
function Pair:send(from, data, limit)
  local to, received, writes = from.peer, {}, {}
  local offset, got = 1, 0
  for _ = 1, limit or 100000 do
    if offset <= #data then
      local n, status = from.conn:write(data:sub(offset))
      writes[#writes + 1] = n or status
      if n then offset = offset + n end
    end
    self:pump()
    repeat
      local chunk, status, code = to.conn:read()
      if chunk then
        received[#received + 1] = chunk
        got = got + #chunk
      elseif status ~= "want_read" then
        error("read failed: " .. tostring(status) .. " " .. tostring(code), 2)
      end
    until not chunk
    self:pump()
    if got >= #data and offset > #data then break end
  end
  return table.concat(received), writes
end

--- Reads everything `side` can read now: the data, and the last status.
function Pair:drain(side)
  local parts = {}
  while true do
    local chunk, status, code = side.conn:read()
    if not chunk then return table.concat(parts), status, code end
    parts[#parts + 1] = chunk
  end
end

--- A client connection and a server connection sharing one BIO pair of
-- `size` bytes (no pumping needed): returns client, server.
function M.direct(client_ctx, server_ctx, size, client_opts)
  local a, b = tls.new_bio_pair(size)
  local client = client_ctx:new_conn(merged({ server_name = "localhost", bio = a }, client_opts))
  local server = server_ctx:new_conn { bio = b }
  return client, server
end

return M
