-- Real peers: our client against `openssl s_server`, our server against
-- `openssl s_client`, on 127.0.0.1 and ephemeral ports, bytes moved by
-- LuaSocket. Every process runs under `timeout 30` and is killed in `finally`.

local socket = require "socket"
local tls = require "lunatls"
local pair = require "helpers.pair"
local link = require "helpers.link"
local process = require "helpers.process"

local F = pair.fixture

--- Starts `openssl s_server` with `args` on a free port (line-buffered, so
-- its report can be read while it runs); returns the process and the port.
-- Registers its kill with `finally`.
local function s_server(args, naccept)
  local port = process.free_port()
  local server = process.spawn(("timeout 30 stdbuf -oL openssl s_server -accept 127.0.0.1:%d -naccept %d %s")
    :format(port, naccept or 1, args))
  finally(function() server:kill() end)
  assert(process.wait_port(port, 10), "s_server did not start: " .. server:output())
  return server, port
end

local SERVER_KEYS = ("-cert %s -key %s"):format(F"server.pem", F"server.key")

--- Our client connection over TCP to `port`.
local function client_link(port, ctx_opts, conn_opts)
  local conn = pair.client_context(ctx_opts):new_conn(conn_opts or { server_name = "localhost" })
  local l = link.new(conn, assert(link.connect(port)))
  finally(function() l:close() end)
  return l, conn
end

--- Starts `openssl s_client` with `args` against a socket we listen on, and
-- accepts its connection; returns the process and our server link.
local function s_client(args, stdin, ctx_opts)
  local listener, port = link.listen()
  local client = process.spawn(("timeout 30 stdbuf -oL openssl s_client -connect 127.0.0.1:%d %s")
    :format(port, args), { stdin = stdin })
  finally(function()
    client:kill()
    listener:close()
  end)
  local sock = assert(link.accept(listener, 10), "s_client did not connect: " .. client:output())
  local conn = pair.server_context(ctx_opts):new_conn()
  local l = link.new(conn, sock)
  finally(function() l:close() end)
  return client, l, conn
end

local CLIENT_TRUST = ("-CAfile %s -verify_return_error"):format(F"ca.pem")

describe("interop: our client against openssl s_server", function()
  it("handshakes, verifies and exchanges data (s_server -rev echoes lines reversed)", function()
    local server, port = s_server(SERVER_KEYS .. " -rev")
    local l, conn = client_link(port)
    assert.equal("done", l:handshake())
    assert.equal("TLSv1.3", conn:version())
    assert.equal("TLS_AES_256_GCM_SHA384", conn:cipher())
    assert.same({ 0, "ok" }, { conn:verify_result() })
    assert.equal(pair.read_fixture("server.pem"), conn:peer_certificate():pem())
    assert.equal(12, l:write_all("hello world\n"))
    assert.equal("dlrow olleh\n", l:read_until("\n"))
    local line = ("0123456789"):rep(1000)
    assert.equal(#line + 1, l:write_all(line .. "\n"))
    assert.equal(line:reverse() .. "\n", l:read_until("\n"))
    assert.equal("done", l:shutdown())
    assert.is_true(server:wait_output("CONNECTION CLOSED"))
  end)

  it("reads a whole HTTP answer up to close_notify (s_server -www)", function()
    local _, port = s_server(SERVER_KEYS .. " -www")
    local l = client_link(port)
    assert.equal("done", l:handshake())
    l:write_all("GET / HTTP/1.0\r\n\r\n")
    local body, status = l:read_all()
    assert.equal("closed", status)
    assert.matches("^HTTP/1.0 200 ok\r\n", body)
    assert.matches("Ciphers common between both SSL end points", body, 1, true)
    assert.matches("</BODY></HTML>\r\n\r\n$", body)
  end)

  it("negotiates ALPN by the server's preference", function()
    local server, port = s_server(SERVER_KEYS .. " -rev -alpn h2,http/1.1")
    local l, conn = client_link(port, { alpn = { "http/1.1", "h2" } })
    assert.equal("done", l:handshake())
    assert.equal("h2", conn:alpn_selected())
    assert.is_true(server:wait_output("ALPN protocols selected: h2\n"))
  end)

  it("offers only the groups it is given", function()
    local server, port = s_server(SERVER_KEYS .. " -rev")
    local l = client_link(port, { groups = "P-384:P-256" })
    assert.equal("done", l:handshake())
    assert.is_true(server:wait_output("Supported groups: secp384r1:secp256r1\n"), server:output())
  end)

  it("negotiates TLS 1.2 with a TLS 1.2-only server", function()
    local _, port = s_server(SERVER_KEYS .. " -rev -tls1_2")
    local l, conn = client_link(port)
    assert.equal("done", l:handshake())
    assert.equal("TLSv1.2", conn:version())
    assert.equal("ECDHE-ECDSA-AES256-GCM-SHA384", conn:cipher())
    assert.equal("x\n", l:write_all("x\n") and l:read_until("\n"))
  end)

  it("fails with 'protocol' when a TLS 1.2-only client meets a TLS 1.3-only server", function()
    local _, port = s_server(SERVER_KEYS .. " -rev -tls1_3")
    local l = client_link(port, { max_version = "tls1.2" })
    assert.same({ nil, "do_handshake: tlsv1 alert protocol version", "protocol" }, { l:handshake() })
  end)

  it("fails with 'verify' for a certificate of another host", function()
    local _, port = s_server(("-cert %s -key %s -rev"):format(F"wronghost.pem", F"wronghost.key"))
    local l = client_link(port)
    assert.same({ nil, "do_handshake: certificate verify failed: hostname mismatch (expected 'localhost'; "
      .. "the certificate is for wrong.example)", "verify" },
      { l:handshake() })
  end)

  it("presents a client certificate when the server asks (s_server -Verify)", function()
    local server, port = s_server(SERVER_KEYS .. " -rev -Verify 1 -CAfile " .. F"ca.pem")
    local l = client_link(port, { certificate = F"client.pem", key = F"client.key" })
    assert.equal("done", l:handshake())
    assert.equal("ping\n", l:write_all("gnip\n") and l:read_until("\n"))
    assert.is_true(server:wait_output("depth=0 O = lunatls tests, CN = lunatls test client\n"))
  end)

  it("hears the server's refusal when it has no client certificate to give", function()
    local _, port = s_server(SERVER_KEYS .. " -rev -Verify 1 -CAfile " .. F"ca.pem")
    local l = client_link(port)
    assert.equal("done", l:handshake()) -- TLS 1.3: the client finishes first
    assert.same({ "", "protocol", "read: tlsv13 alert certificate required" }, { l:read_all() })
  end)

  it("resumes a session with the same server", function()
    local _, port = s_server(SERVER_KEYS .. " -rev", 2)
    local ctx = pair.client_context()
    local first = link.new(ctx:new_conn { server_name = "localhost" }, assert(link.connect(port)))
    finally(function() first:close() end)
    assert.equal("done", first:handshake())
    assert.equal("a\n", first:write_all("a\n") and first:read_until("\n")) -- the ticket is read too
    local session = first.conn:session()
    assert.is_true(session:is_resumable())
    first:shutdown()
    local second = link.new(ctx:new_conn { server_name = "localhost", session = session },
                            assert(link.connect(port)))
    finally(function() second:close() end)
    assert.equal("done", second:handshake())
    assert.is_true(second.conn:session_reused())
  end)
end)

describe("interop: our server against openssl s_client", function()
  local VERIFY_LOCALHOST = CLIENT_TRUST .. " -servername localhost -verify_hostname localhost"

  it("handshakes, exchanges data and closes with close_notify both ways", function()
    local client, l, conn = s_client(VERIFY_LOCALHOST .. " -ign_eof", "hello from s_client\n")
    assert.equal("done", l:handshake())
    assert.equal("TLSv1.3", conn:version())
    assert.equal("localhost", conn:server_name())
    assert.equal("hello from s_client\n", l:read_until("\n"))
    assert.equal(19, l:write_all("hello from lunatls\n"))
    assert.equal("done", l:shutdown()) -- s_client answered our close_notify
    assert.is_true(client:wait_output("\nhello from lunatls\n"))
    assert.matches("Verify return code: 0 (ok)", client:output(), 1, true)
  end)

  -- TLS 1.2: s_client -reconnect reconnects before a TLS 1.3 ticket could arrive
  for _, version in ipairs { "-tls1_2" } do
    it("resumes s_client's sessions (" .. version .. " -reconnect) and knows the SNI of each", function()
      local listener, port = link.listen()
      local client = process.spawn(("timeout 30 stdbuf -oL openssl s_client -connect 127.0.0.1:%d %s %s "
        .. "-reconnect -servername localhost"):format(port, CLIENT_TRUST, version), { stdin = "" })
      finally(function()
        client:kill()
        listener:close()
      end)
      local ctx, reused = pair.server_context(), 0
      for _ = 1, 6 do -- the first connection and five reconnections
        local sock = assert(link.accept(listener, 10), "s_client did not connect: " .. client:output())
        local conn = ctx:new_conn()
        local l = link.new(conn, sock)
        assert.equal("done", l:handshake())
        assert.equal("localhost", conn:server_name())
        if conn:session_reused() then reused = reused + 1 end
        l:shutdown(2)
        l:close()
      end
      assert.is_true(reused >= 4, client:output())
    end)
  end

  -- RFC 6066 max_fragment_length: OpenSSL then cuts our writes into 512-byte
  -- records, and src/conn.c (one_record) gives it one record's worth per
  -- call; a 48 KB write arrives whole
  it("writes whole in the record size s_client asked for (-maxfraglen 512)", function()
    local client, l = s_client(VERIFY_LOCALHOST .. " -maxfraglen 512 -ign_eof", "go\n")
    assert.equal("done", l:handshake())
    assert.equal("go\n", l:read_until("\n"))
    local line = ("0123456789abcdef"):rep(3000)
    assert.equal(#line + 1, l:write_all(line .. "\n"))
    assert.is_true(client:wait_output(line .. "\n"), "s_client did not print the whole line")
  end)

  it("selects ALPN and uses only its groups", function()
    local client, l, conn = s_client(VERIFY_LOCALHOST .. " -alpn http/1.1,h2", nil,
      { alpn = { "h2" }, groups = "P-384" })
    assert.equal("done", l:handshake())
    assert.equal("h2", conn:alpn_selected())
    assert.is_true(client:wait_output("ALPN protocol: h2\n"))
    assert.matches("Server Temp Key: ECDH, secp384r1, 384 bits", client:output(), 1, true)
  end)

  it("speaks TLS 1.2 with the cipher the client insists on", function()
    local _, l, conn = s_client(CLIENT_TRUST .. " -tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305")
    assert.equal("done", l:handshake())
    assert.equal("TLSv1.2", conn:version())
    assert.equal("ECDHE-ECDSA-CHACHA20-POLY1305", conn:cipher())
    assert.is_nil(conn:server_name()) -- no -servername: no SNI
  end)

  it("verifies the client certificate it requires", function()
    local _, l, conn = s_client(("%s -cert %s -key %s"):format(CLIENT_TRUST, F"client.pem", F"client.key"),
      nil, { verify = "require", cafile = F"ca.pem" })
    assert.equal("done", l:handshake())
    assert.equal("CN=lunatls test client,O=lunatls tests", conn:peer_certificate():subject())
    assert.same({ 0, "ok" }, { conn:verify_result() })
  end)

  it("fails with 'verify' when the client sends no certificate", function()
    local _, l = s_client(CLIENT_TRUST, nil, { verify = "require", cafile = F"ca.pem" })
    assert.same({ nil, "do_handshake: peer did not return a certificate", "verify" }, { l:handshake() })
  end)

  it("fails with 'verify' for a client certificate from an untrusted CA", function()
    local _, l = s_client(("%s -cert %s -key %s"):format(CLIENT_TRUST, F"otherclient.pem", F"otherclient.key"),
      nil, { verify = "require", cafile = F"ca.pem" })
    assert.same({ nil, "do_handshake: certificate verify failed: unable to get local issuer certificate",
                  "verify" }, { l:handshake() })
  end)

  it("logs the same key lines as s_client -keylogfile", function()
    local keylog_path = os.tmpname()
    finally(function() os.remove(keylog_path) end)
    local ours = {}
    local client, l = s_client(CLIENT_TRUST .. " -keylogfile " .. keylog_path, nil,
      { keylog = function(line) ours[#ours + 1] = line end })
    assert.equal("done", l:handshake())
    local theirs
    for _ = 1, 250 do -- s_client writes its file as the secrets come
      theirs = {}
      for line in io.lines(keylog_path) do
        if not line:match("^#") and line ~= "" then theirs[#theirs + 1] = line end
      end
      if #theirs >= 5 then break end
      process.sleep(0.02)
    end
    table.sort(ours)
    table.sort(theirs)
    assert.equal(5, #ours)
    assert.same(theirs, ours)
  end)

  it("sees 'eof' when s_client is killed mid-connection", function()
    local client, l = s_client(CLIENT_TRUST .. " -ign_eof", nil)
    assert.equal("done", l:handshake())
    client:kill()
    local data, status = l:read_all()
    assert.equal("", data)
    assert.equal("eof", status)
  end)
end)

describe("interop: fd mode (new_conn{fd=}), the socket read and written by OpenSSL", function()
  --- Calls `step` until it stops asking to wait, waiting on `sock` with select.
  local function drive(sock, step)
    for _ = 1, 500 do
      local first, second, third = step()
      local status = first == nil and second or first
      if status == "want_read" then
        socket.select({ sock }, nil, 1)
      elseif status == "want_write" then
        socket.select(nil, { sock }, 1)
      else
        return first, second, third
      end
    end
    error("no progress")
  end

  --- A client and a server connection in fd mode over loopback TCP, handshaken
  -- and the client's tickets read; `client_opts` adds to the client's options.
  -- Returns them and the client's socket; everything is closed by `finally`.
  local function handshaken_pair(client_opts)
    local listener, port = link.listen()
    finally(function() listener:close() end)
    local csock = assert(link.connect(port))
    finally(function() csock:close() end)
    local ssock = assert(link.accept(listener, 5))
    finally(function() ssock:close() end)
    local options = { server_name = "localhost", fd = csock }
    for k, v in pairs(client_opts) do options[k] = v end
    local client = pair.client_context():new_conn(options)
    local server = pair.server_context():new_conn { fd = ssock }
    for _ = 1, 50 do
      local c, s = client:do_handshake(), server:do_handshake()
      if c == "done" and s == "done" then break end
      socket.select({ csock, ssock }, nil, 0.1)
    end
    assert.equal("want_read", select(2, client:read())) -- the tickets, read
    return client, server, csock
  end

  it("talks to s_server over a LuaSocket object, and over its getfd() number", function()
    local _, port = s_server(SERVER_KEYS .. " -rev", 2)
    for _, as_number in ipairs { false, true } do
      local sock = assert(link.connect(port))
      finally(function() sock:close() end)
      local fd = as_number and sock:getfd() or sock -- LuaSocket's getfd() is a float
      local conn = pair.client_context():new_conn { server_name = "localhost", fd = fd }
      assert.is_nil(conn:bio())
      assert.equal("done", drive(sock, function() return conn:do_handshake() end))
      assert.equal(6, drive(sock, function() return conn:write("hello\n") end))
      assert.equal("olleh\n", drive(sock, function() return conn:read() end))
      assert.equal("done", drive(sock, function() return conn:shutdown() end))
      conn:close()
    end
  end)

  it("read(max) takes every record the socket already holds, in one call", function()
    -- a socket does not say how much it holds: descriptor mode reads on
    -- until OpenSSL says want_read (a stream's receive_some then gets a
    -- bulk transfer's small records together, not one call each)
    local client, server, csock = handshaken_pair {}
    for i = 1, 20 do assert.equal(100, server:write(("%03d"):format(i):rep(100):sub(1, 100))) end
    socket.select({ csock }, nil, 1)
    socket.sleep(0.05) -- all 20 records are in the socket by now
    local data = client:read(16384)
    assert.equal(2000, #data)
    assert.equal(("020"):rep(34):sub(1, 100), data:sub(1901))
    assert.same({ nil, "want_read" }, { client:read() })
    assert.equal(300, server:write(("x"):rep(300)))
    socket.select({ csock }, nil, 1)
    socket.sleep(0.05)
    assert.equal(("x"):rep(10), client:read(10)) -- and never more than max
    assert.equal(("x"):rep(290), client:read())
  end)

  it("read_ahead: one recv takes what the socket holds; has_pending() shows the records OpenSSL keeps", function()
    local client, server, csock = handshaken_pair { read_ahead = true }
    assert.is_false(client:has_pending())
    assert.equal(5, server:write("first"))
    assert.equal(6, server:write("second"))
    socket.select({ csock }, nil, 1)
    socket.sleep(0.05) -- both records are in the socket by now
    assert.equal("first", client:read(5))
    -- the second record came in with the first: it is inside OpenSSL, not
    -- in the socket, and not decrypted yet
    assert.equal(0, client:pending())
    assert.is_true(client:has_pending())
    assert.same({}, (socket.select({ csock }, nil, 0))) -- the socket has nothing
    assert.equal("second", client:read())
    assert.is_false(client:has_pending())
    assert.same({ nil, "want_read" }, { client:read() })
  end)

  it("read_ahead and has_pending: misuse raises, naming the option", function()
    local ctx = pair.server_context()
    assert.has_error(function() ctx:new_conn { read_ahead = 1 } end,
      "bad argument #1 to 'new_conn' (option 'read_ahead': boolean expected, got number)")
    local conn = ctx:new_conn()
    assert.is_false(conn:has_pending())
    conn:close()
    assert.has_error(function() conn:has_pending() end, "attempt to use a closed lunatls.Conn")
  end)

  it("close_fd: the connection closes its descriptor when closed or collected, once new_conn succeeded", function()
    local listener = link.listen()
    finally(function() listener:close() end)
    local server_ctx = pair.server_context()
    local function descriptor()
      local sock = assert(socket.tcp())
      assert(sock:bind("127.0.0.1", 0))
      local fd = math.tointeger(sock:getfd())
      sock:setfd(-1) -- the socket object lets go of it
      return fd, function() -- closes it through a socket object, if still open
        if link.descriptor_open(fd) then
          local owner = assert(socket.tcp())
          owner:setfd(fd)
          owner:close()
        end
      end
    end
    local closed_fd = descriptor()
    local conn = server_ctx:new_conn { fd = closed_fd, close_fd = true }
    assert.is_true(link.descriptor_open(closed_fd))
    conn:close()
    assert.is_false(link.descriptor_open(closed_fd))

    local collected_fd = descriptor()
    -- in a function of its own: no register of this one holds the Conn
    ;(function() server_ctx:new_conn { fd = collected_fd, close_fd = true } end)()
    collectgarbage()
    collectgarbage()
    assert.is_false(link.descriptor_open(collected_fd))

    -- a new_conn that raises after the descriptor was attached leaves it open
    local kept_fd, close_kept = descriptor()
    finally(close_kept)
    assert.has_error(function() server_ctx:new_conn { fd = kept_fd, close_fd = true, alpn = 42 } end)
    collectgarbage()
    collectgarbage()
    assert.is_true(link.descriptor_open(kept_fd))
    -- without close_fd the descriptor is the caller's
    server_ctx:new_conn({ fd = kept_fd }):close()
    assert.is_true(link.descriptor_open(kept_fd))
  end)

  it("close_fd: misuse raises, naming the option", function()
    local ctx = pair.server_context()
    local sock = assert(socket.bind("127.0.0.1", 0))
    finally(function() sock:close() end)
    assert.has_error(function() ctx:new_conn { close_fd = true } end,
      "bad argument #1 to 'new_conn' (option 'close_fd' needs option 'fd')")
    assert.has_error(function() ctx:new_conn { fd = sock, close_fd = true } end,
      "bad argument #1 to 'new_conn' (option 'close_fd': 'fd' must be a descriptor number (a socket object closes its own))")
    assert.has_error(function() ctx:new_conn { fd = sock:getfd(), close_fd = "yes" } end,
      "bad argument #1 to 'new_conn' (option 'close_fd': boolean expected, got string)")
    assert.is_true(link.descriptor_open(sock:getfd()))
  end)

  it("check_fd: a socket closed under the connection fails every I/O call with code eof, "
     .. "and the descriptor the system gave to a new socket is never touched", function()
    -- without check_fd, the hazard itself: OpenSSL writes into the new socket
    for _, check in ipairs { false, true } do
      local client, _, csock = handshaken_pair { check_fd = check }
      local listener, port = link.listen()
      finally(function() listener:close() end)
      local fd = csock:getfd()
      finally(link.take_numbers_below(fd))
      csock:close()
      local other = assert(link.connect(port))
      finally(function() other:close() end)
      assert.equal(fd, other:getfd()) -- the closed socket's number, given again
      local peer = assert(link.accept(listener, 5))
      finally(function() peer:close() end)
      peer:settimeout(0.2)
      if check then
        local closed = { nil, "the socket was closed under the connection", "eof" }
        assert.same(closed, { client:write("secret") })
        -- kept: every I/O method repeats it without a call to the socket
        assert.same(closed, { client:read() })
        assert.same(closed, { client:do_handshake() })
        assert.same(closed, { client:shutdown() })
        assert.same(closed, { client:read_into(tls.new_buffer(16)) })
        local data, err = peer:receive(1)
        assert.same({ nil, "timeout" }, { data, err })
      else
        assert.equal(6, client:write("secret"))
        assert.is_not_nil(peer:receive(1)) -- a record on a stranger's connection
      end
    end
  end)

  it("check_fd on a LuaSocket object: whatever changes the descriptor it holds (close, setfd) "
     .. "fails the next I/O call; while it holds it, no call asks getfd()", function()
    local methods, getfd, asked -- LuaSocket's "tcp{client}" class: shared
    finally(function() if methods then methods.getfd = getfd end end)
    local changes = {
      close = function(sock) sock:close() end,
      ["setfd(-1)"] = function(sock) sock:setfd(-1) end,
      ["setfd(another)"] = function(sock, fd)
        local other = assert(socket.tcp())
        finally(function() other:close() end)
        sock:setfd(other:getfd()) -- the object now holds a stranger's descriptor
        other:setfd(fd) -- which closes the connection's when `other` is closed
      end,
    }
    for name, change in pairs(changes) do
      local client, _, csock = handshaken_pair { check_fd = true }
      methods = getmetatable(csock).__index
      getfd = getfd or methods.getfd
      methods.getfd = function(...) asked = asked + 1; return getfd(...) end
      asked = 0
      assert.equal(6, client:write("hello!"), name)
      assert.same({ nil, "want_read" }, { client:read() }, name)
      assert.equal(0, asked, name) -- read where LuaSocket keeps it
      local fd = csock:getfd()
      change(csock, fd)
      assert.same({ nil, "the socket was closed under the connection", "eof" }, { client:write("x") }, name)
      methods.getfd = getfd
    end
  end)

  it("check_fd: a getfd() that closes the connection meets a busy connection; one that raises "
     .. "leaves it usable", function()
    local listener, port = link.listen()
    finally(function() listener:close() end)
    local sock = assert(link.connect(port))
    finally(function() sock:close() end)
    local conn, mood
    local object = setmetatable({}, { __index = { getfd = function()
      if mood == "close" then conn:close() elseif mood == "raise" then error("getfd failed", 0) end
      return sock:getfd()
    end } })
    conn = pair.client_context():new_conn { server_name = "localhost", fd = object, check_fd = true }
    mood = "close"
    assert.has_error(function() conn:write("x") end,
      "lunatls.Conn is busy: called from one of its own callbacks")
    mood = "raise"
    assert.has_error(function() conn:do_handshake() end, "getfd failed")
    mood = nil
    assert.equal("want_read", conn:do_handshake()) -- neither left it closed or busy
    conn:close()
  end)

  it("check_fd: misuse raises, naming the option", function()
    local ctx = pair.client_context()
    local sock = assert(socket.bind("127.0.0.1", 0))
    finally(function() sock:close() end)
    for _, options in ipairs { { check_fd = true }, { fd = sock:getfd(), check_fd = true } } do
      options.server_name = "localhost"
      assert.has_error(function() ctx:new_conn(options) end,
        "bad argument #1 to 'new_conn' (option 'check_fd' needs option 'fd' to be a socket object)")
    end
    assert.has_error(function() ctx:new_conn { server_name = "localhost", fd = sock, check_fd = 1 } end,
      "bad argument #1 to 'new_conn' (option 'check_fd': boolean expected, got number)")
  end)

  it("gives 'syscall' with the OS reason for a closed descriptor", function()
    local listener, port = link.listen()
    finally(function() listener:close() end)
    local sock = assert(link.connect(port))
    local conn = pair.client_context():new_conn { server_name = "localhost", fd = sock:getfd() }
    sock:close()
    assert.same({ nil, "do_handshake: Bad file descriptor", "syscall" }, { conn:do_handshake() })
  end)

  it("gives 'eof' when the peer closes the TCP connection mid-handshake", function()
    local listener, port = link.listen()
    finally(function() listener:close() end)
    local sock = assert(link.connect(port))
    finally(function() sock:close() end)
    local peer = assert(link.accept(listener, 5))
    local conn = pair.client_context():new_conn { server_name = "localhost", fd = sock }
    assert.equal("want_read", conn:do_handshake())
    socket.select({ peer }, nil, 1)
    peer:settimeout(1)
    assert.is_not_nil(peer:receive(5)) -- read (part of) the hello: the close is a FIN, not a RST
    peer:shutdown("send")
    local ok, message, code = drive(sock, function() return conn:do_handshake() end)
    peer:close()
    assert.is_nil(ok)
    assert.equal("eof", code)
    assert.matches("^do_handshake: unexpected eof", message)
  end)
end)
