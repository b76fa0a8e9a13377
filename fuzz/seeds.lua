--- Writes the seed corpus of the handshake fuzz targets: for every variant
-- of fuzz/handshake.lua, a real handshake with this module's own peer, and
-- what that peer sent, as the input that replays it (byte 1 = variant and
-- cut; the rest = the peer's bytes). Run from the top directory:
--   lua5.4 fuzz/seeds.lua [outdir]      (default fuzz/corpus)
-- The replay diverges where the transcript depends on fresh randomness
-- (signatures over the randoms, encrypted TLS 1.3 flights); the fuzzer
-- starts from there.

package.path = "fuzz/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local core = require "lunatls.core"
local handshake = require "handshake"

local FIXTURES = "spec/fixtures/"
local outdir = arg[1] or "fuzz/corpus"

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local function ctx(opts)
  return assert(core.new_context(opts))
end

--- The peer each client variant talks to, and each server variant's client.
local function peer_for_client(v)
  local opts = { mode = "server", certificate = FIXTURES .. "server.pem", key = FIXTURES .. "server.key",
                 verify = "peer", cafile = FIXTURES .. "ca.pem", alpn = { "h2" } }
  if v == 4 then opts.max_version = "tls1.2" end -- resumes the setup's session where it can
  if v >= 8 then opts.ocsp_staple = read_file(FIXTURES .. "ocsp-good.der") end -- they ask for one
  return ctx(opts), {}
end

local function peer_for_server(v)
  local opts = { mode = "client", verify = "none", certificate = FIXTURES .. "client.pem",
                 key = FIXTURES .. "client.key", alpn = { "http/1.1" } }
  local conn = {}
  if v == 3 or v == 8 then conn.server_name = "other.example" end
  if v == 9 then opts.ocsp = "request" end
  if v == 6 then opts.min_version, opts.max_version, opts.ciphers = "tls1.0", "tls1.0", "ALL:@SECLEVEL=0" end
  return ctx(opts), conn
end

--- Runs a handshake (and one exchange of data, and shutdown) between `a`
-- (the variant under test) and `b` (its peer); returns every byte b sent.
local function transcript(a, b)
  local sent = {}
  local function pump()
    local moved = 0
    for _, dir in ipairs { { a, b, false }, { b, a, true } } do
      local from, to, record = dir[1], dir[2], dir[3]
      local data = from:bio():read()
      if data then
        if record then sent[#sent + 1] = data end
        assert(to:bio():write(data) == #data)
        moved = moved + #data
      end
    end
    return moved
  end
  local done = {}
  for _ = 1, 50 do
    for i, conn in ipairs { a, b } do
      if not done[i] then
        local status, msg = conn:do_handshake()
        assert(status, msg) -- "want_certificate": the next call goes on with the same context
        done[i] = status == "done"
      end
    end
    pump()
    if done[1] and done[2] then break end
  end
  assert(done[1] and done[2], "seed handshake did not finish")
  b:write("hello from the peer")
  pump()
  a:read()
  pump()
  b:read() -- TLS 1.3 tickets
  b:shutdown()
  pump()
  return table.concat(sent)
end

local function write_seed(target, name, data)
  local path = ("%s/%s/%s"):format(outdir, target, name)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

for _, role in ipairs { "client", "server" } do
  os.execute(("mkdir -p %s/%s"):format(outdir, role))
  for v, variant in ipairs(handshake.variants(role, core, FIXTURES)) do
    local peer_ctx, peer_opts = (role == "client" and peer_for_client or peer_for_server)(v - 1)
    local conn_opts = {}
    for k, val in pairs(variant.conn or {}) do conn_opts[k] = val end
    local a = variant.ctx:new_conn(conn_opts)
    local b = peer_ctx:new_conn(peer_opts)
    local bytes = transcript(a, b)
    for cut = 0, 3 do
      -- byte 1: variant bits 0-2 and 5 (fuzz/handshake.lua), cut bits 3-4
      local config = ((v - 1) & 7) | (((v - 1) >> 3) << 5) | (cut << 3)
      write_seed(role, ("seed-v%d-cut%d"):format(v - 1, cut), string.char(config) .. bytes)
    end
    print(role, v - 1, a:version(), #bytes .. " bytes")
  end
end

-- The API target: a few meaningful call sequences (see fuzz/api.lua for the
-- encoding: an operation byte, a slot byte, then the operation's own bytes).
local function api_seed(name, parts)
  os.execute(("mkdir -p %s/api"):format(outdir))
  local bytes = {}
  for _, p in ipairs(parts) do
    bytes[#bytes + 1] = type(p) == "number" and string.char(p) or p
  end
  write_seed("api", name, table.concat(bytes))
end

local function handshake_ops(client_ctx, server_ctx)
  local ops = { 0, 0, client_ctx, 0, 0, 1, 0, 1, server_ctx, 1 }
  for _ = 1, 4 do
    for _, b in ipairs { 1, 0, 6, 0, 1, 1, 6, 1 } do ops[#ops + 1] = b end
  end
  return ops
end

local function plus(list, more)
  local out = {}
  for _, v in ipairs(list) do out[#out + 1] = v end
  for _, v in ipairs(more) do out[#out + 1] = v end
  return out
end

local data_ops = { 3, 0, 5, "hello", 1, 6, 0, 2, 1, 1, 3, 1, 3, "abc", 1, 6, 1, 2, 0, 1 }
local close_ops = { 4, 0, 6, 0, 4, 1, 6, 1, 4, 0, 2, 1, 1 }
api_seed("seed-handshake-data-shutdown", plus(plus(handshake_ops(0, 0), data_ops), close_ops))
api_seed("seed-tls12-accessors", plus(plus(handshake_ops(1, 1), data_ops), { 13, 0, 0, 32, 0, 13, 1, 1, 16, 1, 17, 0 }))
api_seed("seed-client-cert-keyupdate", plus(plus(handshake_ops(2, 0), { 12, 0, 0, 6, 0, 2, 1, 1 }), data_ops))
api_seed("seed-corrupt", plus(handshake_ops(0, 0), { 3, 0, 5, "hello", 1, 8, 0, 3, 1, 2, 1, 1 }))
api_seed("seed-gc-midway", plus({ 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 6, 0, 15, 1, 14, 0, 1, 0 }, close_ops))
print("api seeds written")
