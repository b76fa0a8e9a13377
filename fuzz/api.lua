--- Fuzz target: the sequence of API calls. Each input byte picks an
-- operation (and the next bytes its arguments) on a few connections, BIO
-- ends, certificates and sessions: handshakes, reads, writes, shutdowns,
-- closes, garbage and corruption in transit, role changes, accessors on any
-- object at any time, collections. Every result is checked against the
-- documented contract (fuzz/check.lua), every raise must be a documented
-- programming error, and what a connection reads must be exactly what its
-- peer wrote unless bytes were corrupted or injected on the way.
-- Returns setup(core, fixtures) -> run(data[, probe]).

local check = require "check"

local SLOTS = 4 -- connections 1/2 and 3/4 are pairs of peers

return function(core, fixtures)
  local function ctx(opts)
    return assert(core.new_context(opts))
  end
  local server_ctx = ctx { mode = "server", certificate = fixtures .. "server.pem", key = fixtures .. "server.key",
                           alpn = { "h2", "http/1.1" }, verify = "peer", cafile = fixtures .. "ca.pem" }
  -- A client whose keylog callback always raises (a string, a table or a
  -- number: what the input chose when it made the last such connection).
  -- Its connections take callback_errors = "return", so every I/O call that
  -- meets the callback must return nil, "<method>: a callback raised an
  -- error...", "callback" and the failure stick, never raise or go on.
  local raising_kinds = { "fuzz: keylog raises", {}, 42 }
  local raising_kind = raising_kinds[1]
  local raising_client = ctx { mode = "client", cafile = fixtures .. "ca.pem",
                               keylog = function() error(raising_kind) end }
  local contexts = {
    client = {
      ctx { mode = "client", cafile = fixtures .. "ca.pem" },
      ctx { mode = "client", verify = "none", max_version = "tls1.2", alpn = { "h2" } },
      ctx { mode = "client", cafile = fixtures .. "ca.pem", certificate = fixtures .. "client.pem",
            key = fixtures .. "client.key", keylog = function() end },
    },
    server = {
      server_ctx,
      ctx { mode = "server", certificate = fixtures .. "server.pem", key = fixtures .. "server.key",
            max_version = "tls1.2", tickets = false },
    },
  }

  --- The state of one run: the input cursor, and the objects.
  local function text_of(name)
    local file = assert(io.open(fixtures .. name))
    local text = file:read("a")
    file:close()
    return text
  end
  local pem = { ca = text_of("ca.pem"), cert = text_of("server.pem"), key = text_of("server.key") }
  local function new_run(data, probe)
    return { data = data, pos = 1, probe = probe, conns = {}, certs = {}, sessions = {}, pem = pem,
             -- per connection: bytes written and not yet read by the peer, and
             -- whether the stream towards it may have been tampered with
             expected = { "", "", "", "" }, tainted = {}, unsent = {},
             failure = {} } -- per connection: its first failure {message, code}
  end

  local function byte(r)
    local b = r.data:byte(r.pos) or 0
    r.pos = r.pos + 1
    return b
  end

  local function bytes(r, n)
    local s = r.data:sub(r.pos, r.pos + n - 1)
    r.pos = r.pos + n
    return s
  end

  local function peer_of(i) return i % 2 == 1 and i + 1 or i - 1 end

  --- Calls `f`, accepting only a documented raise; returns ok, results...
  local function guarded(f, ...)
    local result = table.pack(pcall(f, ...))
    if not result[1] then check.raised(result[2]) end
    return table.unpack(result, 1, result.n)
  end

  --- `t` seen through a proxy, as a config object reading the environment
  -- would be: every read runs the collector a step and returns a string
  -- that nothing else holds, so C that keeps a pointer to a value it has
  -- let go of reads freed memory (ASan) or garbage.
  local function proxy(t)
    return setmetatable({}, { __index = function(_, k)
      collectgarbage("step")
      local v = t[k]
      if type(v) == "string" then return (v .. "#"):sub(1, -2) end
      return v
    end })
  end

  --- A list read only through __len and __index, with fresh names.
  local function proxy_list(prefix, n)
    return setmetatable({}, {
      __len = function() collectgarbage("step"); return n end,
      __index = function(_, k) collectgarbage("step"); return prefix .. ("-"):rep(40) .. k end,
    })
  end

  --- new_conn: bytes ctx, then (client) name and session, then buffer or read-ahead.
  local function new_conn(r, i)
    local client = i % 2 == 1
    local list = client and contexts.client or contexts.server
    local c = list[byte(r) % #list + 1]
    local opts = {}
    if client then
      opts.server_name = ({ "localhost", "127.0.0.1", "wrong.example", "::1" })[byte(r) % 4 + 1]
      local b = byte(r) -- >= 128: resume session slot b % 4 + 1, if any
      if b >= 128 then opts.session = r.sessions[b % 4 + 1] end
    end
    local b = byte(r) -- multiple of 4: a small BIO pair of its own
    if b % 4 == 0 then opts.buffer_size = 1 + (b >> 2) * 256 end
    if b % 8 == 2 then opts.read_ahead = true end -- records kept inside OpenSSL
    if b % 8 == 1 then opts = proxy(opts) end
    -- (3 and 7 meant nothing before: the stored inputs keep their calls)
    if b % 8 == 3 then opts.callback_errors = "return" end
    if b % 8 == 7 and client then
      c, opts.callback_errors = raising_client, "return"
      raising_kind = raising_kinds[(b >> 3) % 3 + 1]
    end
    if r.conns[i] then r.conns[i]:close() end
    -- a session whose server is not valid for the name is refused (raises)
    local ok, conn = guarded(c.new_conn, c, opts)
    if not ok then
      r.conns[i] = nil
      if r.conns[peer_of(i)] then r.tainted[peer_of(i)] = true end
      return
    end
    r.conns[i] = conn
    r.expected[i], r.tainted[i], r.unsent[i], r.failure[i] = "", false, nil, nil
    -- the old peer's stream now comes from a stranger
    if r.conns[peer_of(i)] then r.tainted[peer_of(i)] = true end
  end

  --- Moves up to `limit` bytes from conn i's network end to its peer's,
  -- flipping one of them when `flip` is set.
  local function pump(r, i, limit, flip)
    local from, to = r.conns[i], r.conns[peer_of(i)]
    if not (from and to) then return end
    local ok, a = guarded(from.bio, from)
    local ok2, nb = guarded(to.bio, to)
    if not (ok and ok2 and a and nb) then return end
    if not flip and r.pos % 4 == 0 then -- ring to ring: what nb does not take stays in a
      guarded(a.move_to, a, nb, limit)
      return
    end
    local ok3, data = guarded(a.read, a, limit)
    if not (ok3 and data) then return end
    if flip and #data > 0 then
      local at = byte(r) % #data + 1
      data = data:sub(1, at - 1) .. string.char(data:byte(at) ~ (1 << (byte(r) % 8))) .. data:sub(at + 1)
      r.tainted[peer_of(i)] = true
    end
    local ok4, taken = guarded(nb.write, nb, data)
    if ok4 and (not taken or taken < #data) then
      -- the peer's buffer is full: what it did not take is lost in transit
      r.tainted[peer_of(i)] = true
    end
  end

  --- A failed connection keeps giving its first failure (OpenSSL forbids
  -- further I/O after one; spec/04-io_spec.lua): the same message and code
  -- from every later I/O call. `recorded`: an I/O failure that counts as one
  -- (not key_update's "not possible now").
  local function failed(r, i, message, code, recorded)
    if not code or code == "closed" then return end
    if check.is_usage_error(message) then return end
    local first = r.failure[i]
    if first then
      if first[1] ~= message or first[2] ~= code then
        check.fail("connection failed with %q (%s), then said %q (%s)", first[1], first[2], message, code)
      end
    elseif recorded then
      r.failure[i] = { message, code }
    end
  end

  --- conn:read_into(buffer, max), its results as read's: the data as a string.
  -- (The new calls below take no input byte of their own, the input's
  -- position picks them: the stored corpus and regressions keep driving the
  -- calls they were found with.)
  local function read_into(conn, max)
    local buffer = core.new_buffer(max or 16384)
    local n, count, status, code = check.pack(conn:read_into(buffer, max))
    if math.type(count) ~= "integer" then return n, count, status, code end
    if count ~= #buffer or count > buffer:capacity() then
      check.fail("read_into: %d bytes, the buffer holds %d of %d", count, #buffer, buffer:capacity())
    end
    return n, buffer:tostring()
  end

  local function do_read(r, i, conn)
    local max = byte(r) % 3 == 0 and 1 + byte(r) or nil
    local n, data, status, code
    if r.pos % 4 == 0 then n, data, status, code = read_into(conn, max)
    else n, data, status, code = check.pack(conn:read(max)) end
    data, status, code = check.read_result(data, status, code, n, max or 16384)
    if r.probe then r.probe(conn, code and status) end
    failed(r, i, status, code, true)
    if data then
      -- never lose, reorder or invent data: it is what the peer wrote, in order
      if not r.tainted[i] then
        if r.expected[i]:sub(1, #data) ~= data then
          check.fail("read: got %q, the peer wrote %q", data, r.expected[i])
        end
      end
      r.expected[i] = r.expected[i]:sub(#data + 1)
    end
  end

  local function do_write(r, i, conn)
    local data = r.unsent[i] or ""
    data = data .. bytes(r, byte(r) % 40)
    if byte(r) % 8 == 0 then data = data .. string.rep("x", 20000) end
    local n, taken, status, code = check.pack(conn:write(data))
    taken = check.write_result(taken, status, code, n, #data)
    failed(r, i, status, code, true)
    if taken then
      local peer = peer_of(i)
      r.expected[peer] = r.expected[peer] .. data:sub(1, taken)
      r.unsent[i] = taken < #data and data:sub(taken + 1) or nil
    else
      r.unsent[i] = #data > 0 and data or nil -- the next write begins with these
    end
  end

  local function certificate_methods(cert)
    for _, m in ipairs { "subject", "issuer", "subject_alt_names", "not_before", "not_after",
                         "serial", "fingerprint", "pem" } do
      guarded(cert[m], cert)
    end
    guarded(tostring, cert)
  end

  local function accessors(r, conn)
    for _, m in ipairs { "version", "cipher", "alpn_selected", "server_name", "verify_result",
                         "session_reused", "pending", "has_pending", "bio" } do
      guarded(conn[m], conn)
    end
    local ok, cert = guarded(conn.peer_certificate, conn)
    if ok and cert then r.certs[#r.certs % 4 + 1] = cert end
    local ok2, chain = guarded(conn.peer_chain, conn)
    if ok2 then for _, c in ipairs(chain) do certificate_methods(c) end end
    local ok3, session = guarded(conn.session, conn)
    if ok3 and session then
      local text = session:export()
      local back, message, code = core.import_session(text)
      if not back then check.fail("import_session(export()) failed: %s %s", tostring(message), tostring(code)) end
      r.sessions[byte(r) % 4 + 1] = back
      session:is_resumable()
      session:protocol()
    end
    guarded(conn.export_keying_material, conn, "EXPORTER-fuzz", 1 + byte(r), byte(r) % 2 == 0 and "ctx" or nil)
    guarded(tostring, conn)
  end


  local ops = {}
  ops[1] = function(r, i, conn)
    local ok, n, status, message, code = pcall(function() return check.pack(conn:do_handshake()) end)
    if not ok then return check.raised(n) end
    status = check.first_status("do_handshake", status, message, code, n)
    if r.probe then r.probe(conn, message) end
    failed(r, i, message, code, true)
  end
  ops[2] = function(r, i, conn)
    local ok, err = pcall(do_read, r, i, conn)
    if not ok then
      if tostring(err):find("INVARIANT") then error(err, 0) end
      check.raised(err)
    end
  end
  ops[3] = function(r, i, conn)
    local ok, err = pcall(do_write, r, i, conn)
    if not ok then
      if tostring(err):find("INVARIANT") then error(err, 0) end
      check.raised(err)
    end
  end
  ops[4] = function(r, i, conn)
    local ok, n, status, message, code = pcall(function() return check.pack(conn:shutdown()) end)
    if not ok then return check.raised(n) end
    check.first_status("shutdown", status, message, code, n)
    failed(r, i, message, code, true)
  end
  ops[5] = function(r, i, conn) conn:close(); r.conns[i] = byte(r) % 2 == 0 and conn or nil end
  ops[6] = function(r, i) pump(r, i, nil, false); pump(r, peer_of(i), nil, false) end
  ops[7] = function(r, i) pump(r, i, 1 + byte(r), false) end
  ops[8] = function(r, i) pump(r, i, nil, true) end
  ops[9] = function(r, i, conn) -- garbage into its network end
    local ok, net = guarded(conn.bio, conn)
    if ok and net then
      guarded(net.write, net, bytes(r, byte(r) % 64))
      r.tainted[i] = true
    end
  end
  ops[10] = function(r, i, conn)
    local ok, net = guarded(conn.bio, conn)
    if ok and net then guarded(net.shutdown_write, net) end
  end
  ops[11] = function(r, i, conn) -- close the network end the connection depends on
    local ok, net = guarded(conn.bio, conn)
    if ok and net then net:close(); r.tainted[peer_of(i)] = true end
  end
  ops[12] = function(r, i, conn)
    local ok, res, message, code = guarded(conn.key_update, conn, byte(r) % 2 == 0)
    if ok and not res then
      check.first_status("key_update", nil, message, code, 3)
      failed(r, i, message, code, false)
    end
  end
  ops[13] = function(r, _, conn) accessors(r, conn) end
  ops[14] = function(r) collectgarbage("collect") end
  ops[15] = function(r, i) r.conns[i] = nil; collectgarbage("collect") end
  ops[16] = function(r, i, conn)
    guarded(byte(r) % 2 == 0 and conn.set_connect_state or conn.set_accept_state, conn)
    r.tainted[i], r.tainted[peer_of(i)] = true, true
  end
  ops[17] = function(r) -- certificates and sessions outlive their connections
    for _, cert in pairs(r.certs) do certificate_methods(cert) end
    for _, s in pairs(r.sessions) do guarded(s.export, s); guarded(tostring, s) end
  end
  ops[18] = function(r, i, conn) -- wrong types: must raise, never crash
    local args = { nil, true, 1.5, -1, 0, "x", {}, conn, core.new_bio_pair, io.stdout }
    local a = args[byte(r) % #args + 1]
    local methods = { "read", "write", "export_keying_material", "key_update" }
    local m = methods[byte(r) % #methods + 1]
    guarded(conn[m], conn, a, a)
    -- a number is a string to write() and a max to read(): data this
    -- driver does not track may have moved
    if m == "write" then r.tainted[peer_of(i)] = true end
    if m == "read" then r.tainted[i] = true end
  end
  ops[19] = function(r) -- a connection sharing a BIO pair with a new peer
    local a, b = core.new_bio_pair(1 + byte(r) * 128)
    local client = contexts.client[2]:new_conn { bio = a }
    local server = contexts.server[1]:new_conn { bio = b }
    for _ = 1, byte(r) % 8 do
      guarded(client.do_handshake, client)
      guarded(server.do_handshake, server)
    end
    if byte(r) % 2 == 0 then a:close() end
    guarded(client.read, client)
    guarded(server.write, server, "late")
  end

  ops[20] = function(r) -- contexts configured through proxies, used at once
    if byte(r) % 8 ~= 0 then return end -- a context costs as much as 50 other operations
    local server = byte(r) % 2 == 0
    local opts = { mode = server and "server" or "client",
                   certificate = server and r.pem.cert or nil, key = server and r.pem.key or nil,
                   ca = byte(r) % 2 == 0 and r.pem.ca or nil,
                   ciphers = "ECDHE+AESGCM:" .. "ECDHE+CHACHA20:" .. ("!eNULL:"):rep(byte(r) % 8),
                   alpn = proxy_list("fz", 1 + byte(r) % 4), verify = "none" }
    local ok, c = guarded(core.new_context, proxy(opts))
    if ok and c then guarded(c.new_conn, c, proxy { alpn = not server and proxy_list("a", 2) or nil }) end
  end

  --- run(data[, probe[, trace]]): trace(op, slot) before each operation.
  return function(data, probe, trace)
    local r = new_run(data, probe)
    local steps = 0
    while r.pos <= #data and steps < 400 do
      steps = steps + 1
      local op, i = byte(r) % 21, byte(r) % SLOTS + 1
      local conn = r.conns[i]
      if trace then trace(op, i, conn) end
      if op == 0 or not conn then
        new_conn(r, i)
      else
        ops[op](r, i, conn)
      end
    end
    for i = 1, SLOTS do
      if r.conns[i] then r.conns[i]:close() end
    end
  end
end
