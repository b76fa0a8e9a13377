--- Driven by fuzz/oom.c (make oom): every lunatls call that can reach a Lua
-- callback, with the n-th allocation inside it failing, for every n until
-- the call completes untouched. Each call must either succeed or raise
-- Lua's "not enough memory" (never anything else, never a crash); the
-- objects must stay usable or closable afterwards; and once everything is
-- collected nothing may be left (LeakSanitizer checks at exit).

local core, arm, fixtures = ...

local MEMERR = "not enough memory"

--- Calls f(a) with allocation n failing; returns fired, ok, r1, r2. Nothing
-- between arm(n) and arm() may allocate, or the failure would hit this
-- function instead of lunatls.
local function armed(n, f, a)
  arm(n)
  local ok, r1, r2 = pcall(f, a)
  local fired = arm()
  if not ok and not (fired and tostring(r1):find(MEMERR, 1, true)) then
    error(("n=%d: raised %s (allocation failure %s)"):format(n, tostring(r1),
          fired and "injected" or "not injected"), 0)
  end
  if os.getenv("OOM_DEBUG") and fired then
    io.stderr:write(("n=%d ok=%s %s %s\n"):format(n, tostring(ok), tostring(r1), tostring(r2)))
  end
  return fired, ok, r1, r2
end

local function server_ctx()
  local other = assert(core.new_context { mode = "server", certificate = fixtures .. "server.pem",
                                          key = fixtures .. "server.key", keylog = function() end })
  return assert(core.new_context {
    mode = "server", certificate = fixtures .. "server.pem", key = fixtures .. "server.key",
    keylog = function(line) return #line end,
    servername = function(name) if name == "other.example" then return other end end,
  })
end

local function client_ctx(version)
  return assert(core.new_context { mode = "client", verify = "none", max_version = version,
                                   keylog = function(line) return line:upper() end })
end

--- One handshake in which every call is made with allocation n failing;
-- returns how many calls the failure reached.
local function handshake_with(n, cctx, sctx, name)
  local a, b = core.new_bio_pair()
  local client = cctx:new_conn { bio = a, server_name = name }
  local server = sctx:new_conn { bio = b }
  local reached, done = 0, {}
  for _ = 1, 40 do
    for i, conn in ipairs { client, server } do
      if not done[i] then
        local fired, ok, status, message = armed(n, conn.do_handshake, conn)
        if fired then reached = reached + 1 end
        if ok and status == nil then
          -- a memory error in a callback may surface as a failed handshake
          -- whose message says so; that is the only failure allowed
          if not tostring(message):find("do_handshake", 1, true) then
            error(("n=%d: unexplained failure %s"):format(n, tostring(message)), 0)
          end
          done[1], done[2] = true, true
        elseif ok and status == "done" then
          done[i] = true
        end
      end
    end
    if done[1] and done[2] then break end
  end
  -- usable or closable afterwards: accessors never raise, close always works
  for _, conn in ipairs { client, server } do
    conn:version()
    conn:close()
  end
  return reached
end

local sctx = server_ctx()
for _, version in ipairs { "tls1.2", "tls1.3" } do
  local cctx = client_ctx(version)
  for _, name in ipairs { "localhost", "other.example" } do
    local n = 1
    while handshake_with(n, cctx, sctx, name) > 0 do
      n = n + 1
      collectgarbage()
    end
    print(("oom: %s handshake with SNI %s: allocation failures 1..%d"):format(version, name, n - 1))
  end
end

-- Reads that gather many records (a luaL_Buffer grows while OpenSSL reads)
-- and writes, after a handshake without failures.
local function connected_pair()
  local a, b = core.new_bio_pair(1 << 20)
  local client = client_ctx("tls1.3"):new_conn { bio = a, server_name = "localhost" }
  local server = sctx:new_conn { bio = b }
  for _ = 1, 10 do client:do_handshake(); server:do_handshake() end
  assert(client:do_handshake() == "done" and server:do_handshake() == "done")
  return client, server
end

-- A read that raised took its bytes from OpenSSL first (its allocations all
-- come after): they are lost, so the connection must fail, and never go on
-- to return the bytes after them as if nothing were missing.
local function after_lost_read(n, client)
  local none, message, code = client:read()
  if none ~= nil or code ~= "memory" or message ~= "read: out of memory before the call returned the bytes it had moved" then
    local got = type(none) == "string" and ("%d bytes"):format(#none) or tostring(none)
    error(("n=%d: after a read that raised, read returned %s, %s, %s"):format(n, got,
          tostring(message), tostring(code)), 0)
  end
  assert(select(3, client:write("after")) == "memory") -- kept
end

-- (max = size: "more" stays for the next read, the bytes a read that lost
-- its own must not return)
for _, case in ipairs { { size = 100000, what = "read gathering 100000 bytes" },
                        { size = 1000, what = "read of one 1000-byte record" } } do
  local n = 1
  while true do
    local client, server = connected_pair()
    assert(server:write(string.rep("x", case.size)) == case.size)
    assert(server:write("more") == 4)
    local fired, ok, data = armed(n, function(conn) return conn:read(case.size) end, client)
    if ok then
      assert(#data == case.size or fired)
      assert(client:write("after") == 5) -- still usable
    else
      after_lost_read(n, client)
    end
    client:close()
    server:close()
    if not fired then break end
    n = n + 1
    collectgarbage()
  end
  print(("oom: %s: allocation failures 1..%d"):format(case.what, n - 1))
end

-- Every other entry of the API that allocates, on a connected pair: each
-- must raise "not enough memory" or succeed, and leak nothing either way.
local function every_call()
  local client, server = connected_pair()
  server:write("tickets please")
  client:read()
  local cert = assert(client:peer_certificate())
  local session = assert(client:session())
  local text = session:export()
  local a = core.new_bio_pair()
  local pem = io.open(fixtures .. "ca.pem"):read("a")
  return {
    new_bio_pair = function() return core.new_bio_pair(100) end,
    bio_write = function() return a:write("data") end,
    new_context = function()
      return core.new_context { mode = "client", ca = pem, alpn = { "h2", "http/1.1" },
                                verify_flags = { "partial_chain" }, ciphers = "HIGH", groups = "X25519",
                                keylog = print }
    end,
    new_server_context = function()
      return core.new_context { mode = "server", certificate = fixtures .. "server-chain.pem",
                                key = fixtures .. "server.key", alpn = { "h2" }, servername = print }
    end,
    new_conn = function()
      return client_ctx("tls1.3"):new_conn { server_name = "localhost", alpn = { "x" }, session = session }
    end,
    new_conn_ip = function() return client_ctx("tls1.3"):new_conn { server_name = "::1", buffer_size = 99 } end,
    peer_certificate = function() return client:peer_certificate() end,
    peer_chain = function() return server:peer_chain(), client:peer_chain() end,
    subject = function() return cert:subject(), cert:issuer() end,
    subject_alt_names = function() return cert:subject_alt_names() end,
    dates = function() return cert:not_before(), cert:not_after() end,
    serial = function() return cert:serial() end,
    fingerprint = function() return cert:fingerprint(), cert:fingerprint("sha1") end,
    pem = function() return cert:pem() end,
    tostrings = function()
      return tostring(cert), tostring(session), tostring(client), tostring(a), tostring(sctx)
    end,
    session = function() return client:session() end,
    export = function() return session:export() end,
    import_session = function() return core.import_session(text) end,
    import_garbage = function() return core.import_session("-----BEGIN SSL SESSION PARAMETERS-----\nAAAA") end,
    exporter = function() return client:export_keying_material("EXPORTER-test", 64, "context") end,
    accessors = function()
      return client:version(), client:cipher(), client:alpn_selected(), client:server_name(),
             client:verify_result()
    end,
    write = function() return client:write(string.rep("y", 50000)) end,
    read = function() return server:read(100) end,
    key_update = function() return client:key_update(true) end,
    shutdown = function() return client:shutdown() end,
  }
end

local names = {}
for name in pairs(every_call()) do names[#names + 1] = name end
table.sort(names)
local only = os.getenv("OOM_ONLY") -- one call by name, to find a leak
local n
for _, name in ipairs(names) do
  if only and name ~= only then goto continue end
  n = 1
  while true do
    local f = every_call()[name]
    collectgarbage()
    local fired = armed(n, f)
    if not fired then break end
    n = n + 1
  end
  print(("oom: %s: allocation failures 1..%d"):format(name, n - 1))
  ::continue::
end

-- new_context with a password function, returning the password, or a
-- password it builds (an allocation inside OpenSSL's callback).
for _, password in ipairs { function() return "secret" end,
                            function() return ("%s%s"):format("sec", "ret") end } do
  n = 1
  while true do
    local opts = { mode = "server", certificate = fixtures .. "server.pem",
                   key = fixtures .. "server-encrypted.key", password = password }
    local fired, ok = armed(n, core.new_context, opts)
    if ok and not fired then break end
    n = n + 1
    collectgarbage()
  end
  print(("oom: new_context with a password function: allocation failures 1..%d"):format(n - 1))
end
collectgarbage()
