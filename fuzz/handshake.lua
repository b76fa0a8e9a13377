--- Fuzz driver: arbitrary bytes as the peer's records, fed to a client
-- (fuzz/client.lua) or a server (fuzz/server.lua) handshake through the
-- module's C code. Used by the libFuzzer harness (fuzz/harness.c) and by
-- spec/33-fuzz-regressions_spec.lua, which replays the corpus and every
-- crash input.
--
-- Input: byte 1 picks the configuration (bits 0-2 and 5: the context
-- variant, bits 3-4: how the rest is cut into pieces); the rest is what the
-- peer sends.
-- After the last piece the transport ends (shutdown_write), so every run must
-- finish with "done" or nil, message, code: a "want_read" after the end of the
-- stream would be a hang.
-- @module handshake

local check = require "check"

local M = {}

local MAX_CALLS = 20000 -- far above any real handshake: more is a hang

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

--- A session to offer: one real handshake between this module's own client
-- and server at setup.
local function real_session(core, fixtures)
  local server_ctx = assert(core.new_context { mode = "server", certificate = fixtures .. "server.pem",
                                               key = fixtures .. "server.key" })
  local client_ctx = assert(core.new_context { mode = "client", verify = "none", max_version = "tls1.2" })
  local a, b = core.new_bio_pair()
  local client, server = client_ctx:new_conn { bio = a }, server_ctx:new_conn { bio = b }
  for _ = 1, 20 do
    local c, s = client:do_handshake(), server:do_handshake()
    if c == "done" and s == "done" then break end
  end
  local session = assert(client:session(), "fuzz setup: no session from the real handshake")
  client:close()
  server:close()
  return session
end

local function client_variants(core, fixtures)
  local ca = fixtures .. "ca.pem"
  local session = real_session(core, fixtures)
  local keylog = function(line) assert(type(line) == "string") end
  local function ctx(opts)
    opts.mode = "client"
    return assert(core.new_context(opts))
  end
  return {
    { ctx = ctx { verify = "none" } },
    { ctx = ctx { cafile = ca }, conn = { server_name = "localhost" } },
    { ctx = ctx { verify = "none", max_version = "tls1.2" } },
    { ctx = ctx { verify = "none", alpn = { "h2", "http/1.1" }, keylog = keylog,
                  certificate = fixtures .. "client.pem", key = fixtures .. "client.key" } },
    { ctx = ctx { verify = "none", max_version = "tls1.2" }, conn = { session = session } },
    { ctx = ctx { cafile = ca }, conn = { server_name = "127.0.0.1" } },
    { ctx = ctx { verify = "none", min_version = "tls1.3", groups = "P-256:X25519" } },
    { ctx = ctx { verify = "none", max_version = "tls1.2", ciphers = "AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305" } },
    -- variants 9 and 10 (bit 5 of byte 1): OCSP stapling asked for, and required
    { ctx = ctx { verify = "none", ocsp = "request" } },
    { ctx = ctx { cafile = ca, ocsp = "require" }, conn = { server_name = "localhost" } },
  }
end

local function server_variants(core, fixtures)
  local base = { certificate = fixtures .. "server.pem", key = fixtures .. "server.key" }
  local function ctx(opts)
    opts.mode = "server"
    for k, v in pairs(base) do opts[k] = opts[k] or v end
    return assert(core.new_context(opts))
  end
  local other = ctx {}
  local keylog = function(line) assert(type(line) == "string") end
  local function servername(name)
    if name == "other.example" then return other end
    if name == "refused.example" then return false end
    if name == "raise.example" then error("servername callback raised") end
    return nil
  end
  return {
    { ctx = ctx {} },
    { ctx = ctx { max_version = "tls1.2" } },
    { ctx = ctx { verify = "require", cafile = fixtures .. "ca.pem" } },
    { ctx = ctx { alpn = { "h2", "http/1.1" }, servername = servername, keylog = keylog } },
    { ctx = ctx { tickets = false, session_cache = false, min_version = "tls1.3" } },
    { ctx = ctx { verify = "peer", cafile = fixtures .. "ca.pem", max_version = "tls1.2" } },
    { ctx = ctx { min_version = "tls1.0", ciphers = "ALL:@SECLEVEL=0", groups = "P-256:X25519:ffdhe2048" } },
    { ctx = ctx { max_version = "tls1.2", tickets = false, keylog = keylog } },
    -- variants 9 and 10 (bit 5 of byte 1): the handshake pauses after the
    -- ClientHello and the driver chooses a context by its name; OCSP stapling
    { ctx = ctx { client_hello = true, alpn = { "h2" } }, choose = function(hello)
      if hello.server_name == "refused.example" then return false end
      return hello.server_name == "other.example" and other or nil
    end },
    { ctx = ctx { ocsp_staple = read_file(fixtures .. "ocsp-good.der") } },
  }
end


--- Cuts `data` (from offset 2) into the pieces the transport delivers.
local function pieces(data, mode)
  local list, pos = {}, 2
  if mode == 0 then -- everything at once
    list[1] = data:sub(2)
  elseif mode == 1 then -- record by record, as the 5-byte headers say
    while pos <= #data do
      local hi, lo = data:byte(pos + 3, pos + 4)
      local len = 5 + (hi or 0) * 256 + (lo or 0)
      list[#list + 1] = data:sub(pos, pos + len - 1)
      pos = pos + len
    end
  else -- small pieces of 1 to 8 bytes (mode 2) or 1 to 256 (mode 3), sized by the data itself
    local span = mode == 2 and 8 or 256
    while pos <= #data do
      local len = 1 + (data:byte(pos) % span)
      list[#list + 1] = data:sub(pos, pos + len - 1)
      pos = pos + len
    end
  end
  return list
end

--- Moves everything the connection wrote out of its network end (the fuzz
-- peer does not listen).
local function discard_output(net)
  while net:read() do end
end

--- One handshake step, checked; `probe` feeds libFuzzer's extra counters.
local function step(conn, probe)
  local ok, n, status, message, code = pcall(function() return check.pack(conn:do_handshake()) end)
  if not ok then
    -- the servername callback's own error is raised once; the Conn then
    -- repeats the failure it caused (code "callback")
    if not tostring(n):find("servername callback raised", 1, true) then
      check.fail("do_handshake raised %s", tostring(n))
    end
    return step(conn, probe)
  end
  status, message, code = check.first_status("do_handshake", status, message, code, n)
  if probe then probe(conn, message) end
  return status, message, code
end

--- After "done": whatever application data and alerts follow.
local function after_handshake(conn, net, probe)
  local n, taken, status, code = check.pack(conn:write("ping"))
  check.write_result(taken, status, code, n, 4)
  discard_output(net)
  for _ = 1, 100 do
    local data
    n, data, status, code = check.pack(conn:read(1000))
    data, status, code = check.read_result(data, status, code, n, 1000)
    if probe then probe(conn, code and status) end
    if not data then break end
  end
  local message
  n, status, message, code = check.pack(conn:shutdown())
  check.first_status("shutdown", status, message, code, n)
end

--- Runs one input against `variants`; raises "INVARIANT..." when lunatls
-- misbehaves.
local function run(variants, data, probe)
  local config = data:byte(1) or 0
  local variant = variants[((config & 7) + 8 * ((config >> 5) & 1)) % #variants + 1]
  local conn = variant.ctx:new_conn(variant.conn or {})
  local net = conn:bio()
  local queue, next_piece, ended = pieces(data, (config >> 3) & 3), 1, false
  local finished = false
  for _ = 1, MAX_CALLS do
    local status, _, code = step(conn, probe)
    discard_output(net)
    if status == "done" then
      after_handshake(conn, net, probe)
      finished = true
      break
    elseif status == "want_certificate" then
      if not variant.choose then check.fail("do_handshake: 'want_certificate' from a context that does not pause") end
      local hello = conn:client_hello()
      if type(hello) ~= "table" then check.fail("client_hello: %s while paused", type(hello)) end
      local choice = variant.choose(hello)
      if choice ~= nil then conn:set_context(choice) end
    elseif status == nil then
      if code == "syscall" then check.fail("do_handshake: 'syscall' over a BIO pair") end
      finished = true
      break
    elseif status == "want_read" then
      if ended then check.fail("do_handshake: 'want_read' after the end of the stream (a hang)") end
      local piece = queue[next_piece]
      if piece then
        next_piece = next_piece + 1
        local offset = 1
        while offset <= #piece do -- the buffer is larger than any piece but be exact
          local taken = net:write(piece:sub(offset))
          if not taken or taken == 0 then break end
          offset = offset + taken
        end
      else
        net:shutdown_write()
        ended = true
      end
    end
  end
  if not finished then check.fail("do_handshake: no result after %d calls (a hang)", MAX_CALLS) end
  conn:close()
  -- a closed connection raises, never crashes
  local ok, err = pcall(conn.do_handshake, conn)
  if ok then check.fail("do_handshake on a closed conn did not raise") end
  check.raised(err)
end

--- The contexts (and new_conn options) of each variant of `role`, in the
-- order byte 1 selects them (fuzz/seeds.lua records a real peer for each).
function M.variants(role, core, fixtures)
  return role == "client" and client_variants(core, fixtures) or server_variants(core, fixtures)
end

--- Makes the contexts for `role` ("client" or "server") once, and returns
-- the function that runs one input: run(data[, probe]).
function M.new(role, core, fixtures)
  local variants = M.variants(role, core, fixtures)
  return function(data, probe) return run(variants, data, probe) end
end

return M
