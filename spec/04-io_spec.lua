-- read, write, shutdown and the connection's other I/O: bytes arrive intact,
-- in order, whatever the buffer sizes; statuses say what to do next.

local tls = require "lunatls"
local pair = require "helpers.pair"
local process = require "helpers.process"

--- `n` bytes in which every 8-byte block is numbered: a lost, repeated or
-- reordered block changes the text.
local function numbered_bytes(n)
  local blocks = {}
  for i = 1, n // 8 do blocks[i] = ("%07d\n"):format(i) end
  return table.concat(blocks)
end

local MiB = 1024 * 1024

describe("conn", function()
  describe("write and read", function()
    it("move a message each way", function()
      local p = pair.new():connect()
      assert.equal(5, p.client.conn:write("hello"))
      p:pump()
      assert.equal("hello", p.server.conn:read())
      assert.equal(6, p.server.conn:write("world!"))
      p:pump()
      assert.equal("world!", p.client.conn:read())
    end)

    it("read says want_read when nothing has arrived", function()
      local p = pair.new():connect()
      assert.same({ nil, "want_read" }, { p.server.conn:read() })
      assert.same({ nil, "want_read" }, { p.client.conn:read() })
    end)

    it("read(max) returns at most max bytes; pending() counts the rest of the record", function()
      local p = pair.new():connect()
      p.client.conn:write(string.rep("a", 100))
      p:pump()
      assert.equal(string.rep("a", 10), p.server.conn:read(10))
      assert.equal(90, p.server.conn:pending())
      assert.equal(string.rep("a", 90), p.server.conn:read(1000))
      assert.equal(0, p.server.conn:pending())
    end)

    it("read gathers several buffered records in one call, and splits them on max", function()
      local p = pair.new():connect()
      for _, word in ipairs { "one", "two", "three" } do p.client.conn:write(word) end
      p:pump()
      assert.equal("onetwothree", p.server.conn:read())
      for _, word in ipairs { "one", "two", "three" } do p.client.conn:write(word) end
      p:pump()
      assert.same({ "onet", "woth", "ree" },
        { p.server.conn:read(4), p.server.conn:read(4), p.server.conn:read(4) })
    end)

    it("read returns at most 16384 bytes by default", function()
      local p = pair.new { client_size = 64 * 1024, server_size = 64 * 1024 }:connect()
      local data = numbered_bytes(40000)
      assert.equal(40000, p.client.conn:write(data))
      p:pump()
      local first = p.server.conn:read()
      assert.equal(16384, #first)
      assert.equal(data:sub(1, 16384), first)
    end)

    it("write('') returns 0, before and after the handshake", function()
      local p = pair.new()
      assert.equal(0, p.client.conn:write(""))
      assert.equal(0, p.client.net:pending())
      p:connect()
      assert.equal(0, p.client.conn:write(""))
      assert.equal(0, p.client.net:pending())
    end)

    it("write says want_write when its BIO pair is full", function()
      local p = pair.new { client_size = 1000 }:connect(500)
      assert.same({ nil, "want_write" }, { p.client.conn:write(string.rep("w", 5000)) })
      assert.equal(1000, p.client.net:pending())
    end)

    it("takes fewer bytes than offered when the pair fills; the rest, written later, arrives intact and in order", function()
      local p = pair.new { client_size = 20000 }:connect()
      local data = numbered_bytes(100000)
      -- one whole record (16384 + 22 bytes) fits, the second does not
      assert.equal(16384, p.client.conn:write(data))
      assert.equal(20000, p.client.net:pending())
      -- the next write begins with the bytes not taken; the pair is still full
      assert.same({ nil, "want_write" }, { p.client.conn:write(data:sub(16385)) })
      local received, offset, partial_writes = {}, 16385, 0
      while offset <= #data do
        p:pump()
        received[#received + 1] = (p:drain(p.server))
        local n, status = p.client.conn:write(data:sub(offset))
        if n then
          offset = offset + n
          if offset <= #data then partial_writes = partial_writes + 1 end
        else
          assert.equal("want_write", status)
        end
      end
      p:pump()
      received[#received + 1] = p:drain(p.server)
      assert.is_true(partial_writes > 0)
      assert.equal(#data, #table.concat(received))
      assert.equal(data, table.concat(received))
    end)

    -- A write that says fewer bytes (or none) were taken must not have sent
    -- more: OpenSSL, given more than one record and a retry of a record
    -- half sent, flushed that record and then reported want_write for the
    -- next, so the peer read bytes a write had said were not taken (found
    -- by fuzz/api.lua). The reader checks after every step that it has
    -- read no more than the writes reported, over pairs of several sizes.
    for _, size in ipairs { 17 * 1024, 20000, 4096, 1000, 100 } do
      it(("the peer never reads more than the writes reported taken (pair of %d bytes)"):format(size), function()
        local p = pair.new { server_size = size }:connect(1000)
        p.client.conn:read() -- TLS 1.3 tickets
        local data = numbered_bytes(200000)
        local taken, received, steps, last = 0, {}, 0, 0
        local offered = { 100, 40000, 23634, 16385, 5000, 70000 }
        while taken < #data do
          steps = steps + 1
          -- after a short write, the next offers the same bytes again (the
          -- rule); after a whole one, the next size in turn
          if last <= taken then last = math.min(taken + offered[steps % #offered + 1], #data) end
          local n, status = p.server.conn:write(data, taken + 1, last)
          if n then taken = taken + n else assert.equal("want_write", status) end
          p.server.net:move_to(p.client.net)
          received[#received + 1] = p:drain(p.client)
          local got = #table.concat(received)
          assert.is_true(got <= taken, ("step %d: read %d bytes, writes reported %d"):format(steps, got, taken))
          assert.is_true(steps < 100000)
        end
        p.server.net:move_to(p.client.net)
        received[#received + 1] = p:drain(p.client)
        assert.equal(data, table.concat(received))
      end)
    end

    it("move 1 MiB intact from client to server", function()
      local p = pair.new():connect()
      local data = numbered_bytes(MiB)
      local received = p:send(p.client, data)
      assert.equal(MiB, #received)
      assert.equal(data, received)
    end)

    it("move 1 MiB intact from server to client, over small pairs", function()
      local p = pair.new { client_size = 4096, server_size = 5000 }:connect(1000)
      local data = numbered_bytes(MiB)
      local received, writes = p:send(p.server, data)
      assert.equal(MiB, #received)
      assert.equal(data, received)
      local short = 0
      for _, w in ipairs(writes) do
        if w == "want_write" then short = short + 1 end
      end
      assert.is_true(short > 0) -- the small pairs did push back
    end)

    it("never sends plaintext before the handshake is done", function()
      local p = pair.new()
      assert.same({ nil, "want_read" }, { p.client.conn:write("early") })
      local hello = p.client.net:read()
      assert.is_nil(hello:find("early", 1, true))
      assert.equal(22, hello:byte(1)) -- only the ClientHello went out
    end)
  end)

  describe("shutdown", function()
    it("sends close_notify both ways: 'want_read', then the peer reads 'closed', then 'done'", function()
      local p = pair.new():connect()
      assert.equal("want_read", p.client.conn:shutdown())
      p:pump()
      assert.same({ nil, "closed" }, { p.server.conn:read() })
      assert.same({ nil, "closed" }, { p.server.conn:read() }) -- and stays closed
      assert.equal("done", p.server.conn:shutdown())
      p:pump()
      assert.equal("done", p.client.conn:shutdown())
      assert.same({ nil, "closed" }, { p.client.conn:read() })
    end)

    it("lets data sent before close_notify arrive first", function()
      local p = pair.new():connect()
      p.server.conn:write("goodbye")
      assert.equal("want_read", p.server.conn:shutdown())
      p:pump()
      assert.equal("goodbye", p.client.conn:read())
      assert.same({ nil, "closed" }, { p.client.conn:read() })
    end)

    it("says want_write when close_notify does not fit, and finishes after a pump", function()
      local p = pair.new { client_size = 10 }:connect(1000)
      assert.equal("want_write", p.client.conn:shutdown())
      p:pump()
      local status
      for _ = 1, 10 do
        status = p.client.conn:shutdown()
        p:pump()
        if status ~= "want_write" then break end
      end
      assert.equal("want_read", status)
      assert.same({ nil, "closed" }, { p.server.conn:read() })
    end)

    it("refuses writes after our own close_notify", function()
      local p = pair.new():connect()
      p.client.conn:shutdown()
      assert.same({ nil, "write: protocol is shutdown", "protocol" }, { p.client.conn:write("x") })
    end)
  end)

  describe("a vanished peer", function()
    it("reads the data that arrived, then 'eof'", function()
      local p = pair.new():connect()
      p.server.conn:write("partial answer")
      p:pump()
      p.client.net:shutdown_write() -- the transport reached end of file
      assert.equal("partial answer", p.client.conn:read())
      local ok, message, code = p.client.conn:read()
      assert.is_nil(ok)
      assert.equal("eof", code)
      assert.equal("read: unexpected eof: the peer closed the connection without close_notify", message)
    end)

    it("reads 'eof' when the network end is closed", function()
      local p = pair.new():connect()
      p.client.net:close()
      assert.same({ nil, "read: unexpected eof: the network end of the BIO pair was closed", "eof" },
        { p.client.conn:read() })
    end)

    -- Whatever writes to a descriptor may meet a peer that has gone: then
    -- EPIPE, never SIGPIPE (whose default ends the process). OpenSSL's own
    -- socket BIO writes with write(2), and fd mode died with exit 141.
    -- LuaSocket ignores SIGPIPE when it loads, which hid that from every
    -- test, and a child inherits the ignored signal: this child runs the
    -- core alone, with SIGPIPE's default, on a descriptor bash connected.
    local WRITERS = {
      write = 'return conn:write("hello")',
      shutdown = "return conn:shutdown()",
      send_to = 'mine:write("hello") return theirs:send_to(3)', -- a BIO pair's end, in C
    }
    for _, call in ipairs { "write", "shutdown", "send_to" } do
      it("fd mode, the core alone: " .. call .. " to a peer that has gone fails, no SIGPIPE", function()
        local peers = require "helpers.peers"
        local server, port = peers.openssl_server { version = "tls1.3", naccept = 1 }
        finally(function() server:kill() end)
        local script = ([[
          package.cpath = "./build/?.so;" .. package.cpath
          local core = require "lunatls.core"
          local ctx = core.new_context { mode = "client", cafile = "spec/fixtures/ca.pem" }
          local conn = ctx:new_conn { fd = 3, server_name = "localhost" }
          local mine, theirs = core.new_bio_pair()
          for _ = 1, 200 do
            if conn:do_handshake() == "done" then break end
            os.execute("sleep 0.02")
          end
          assert(conn:do_handshake() == "done", "no handshake")
          os.execute("pkill -KILL -s %d; sleep 0.2")
          -- the first write after the peer's FIN goes out; its RST comes back
          assert(conn:write("anyone?") == 7)
          os.execute("sleep 0.2")
          print("result", (function() %s end)())
        ]]):format(server.pid, WRITERS[call])
        local output = process.run_script(script, ("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; "
          .. "exec env --default-signal=PIPE lua5.4 %%s' 2>&1; echo \"exit:$?\""):format(port))
        assert.matches("exit:0", output)
        local expected = call == "send_to" and "result\tnil\tsend: the peer closed the connection\teof"
          or "result\tnil\t" .. call .. ": Broken pipe\tsyscall"
        assert.matches(expected, output)
      end)
    end

    it("writes 'eof' when the network end is closed", function()
      local p = pair.new():connect()
      p.client.net:close()
      local ok, message, code = p.client.conn:write("anyone?")
      assert.is_nil(ok)
      assert.equal("eof", code)
      assert.matches("^write: unexpected eof", message)
    end)
  end)

  describe("a failed connection", function()
    it("keeps giving its failure, not 'eof', on every later call", function()
      local p = pair.new():connect()
      p.client.net:write("\23\3\3\0\5junk!") -- an application record that fails to decrypt
      local failure = { nil, "read: decryption failed or bad record mac", "protocol" }
      assert.same(failure, { p.client.conn:read() })
      assert.same(failure, { p.client.conn:read() })
      assert.same(failure, { p.client.conn:write("more") })
    end)

    it("keeps giving a failed handshake's error", function()
      local conn = pair.server_context():new_conn()
      conn:bio():write("this is not TLS at all, not even close")
      local failure = { nil, "do_handshake: wrong version number", "protocol" }
      assert.same(failure, { conn:do_handshake() })
      assert.same(failure, { conn:do_handshake() })
      assert.same(failure, { conn:read() })
    end)

    it("keeps giving a verify failure", function()
      local p = pair.new { server_ctx = pair.server_context {
        certificate = pair.fixture("expired.pem"), key = pair.fixture("expired.key") } }
      local result = p:handshake()
      local failure = { nil, "do_handshake: certificate verify failed: certificate has expired", "verify" }
      assert.same(failure, { nil, result.client.message, result.client.code })
      assert.same(failure, { p.client.conn:do_handshake() })
      assert.same(failure, { p.client.conn:write("secret") })
    end)
  end)

  describe("key_update", function()
    it("rotates the keys in TLS 1.3 (requesting the peer's too) and data still flows", function()
      local p = pair.new():connect()
      assert.is_true(p.client.conn:key_update(true))
      p:pump()
      assert.same({ nil, "want_read" }, { p.server.conn:read() }) -- processes the update
      p:pump()
      assert.same({ nil, "want_read" }, { p.client.conn:read() }) -- the peer's update
      assert.equal("after update", p:send(p.client, "after update"))
      assert.equal("and back", p:send(p.server, "and back"))
      assert.is_true(p.server.conn:key_update())
      assert.equal("once more", p:send(p.server, "once more"))
    end)

    it("fails with 'protocol' in TLS 1.2", function()
      local p = pair.new { client_ctx = pair.client_context { max_version = "tls1.2" } }:connect()
      assert.same({ nil, "key_update: wrong ssl version", "protocol" }, { p.client.conn:key_update() })
    end)
  end)

  describe("export_keying_material", function()
    it("gives both sides the same bytes", function()
      local p = pair.new():connect()
      local client = p.client.conn:export_keying_material("EXPERIMENTAL-lunatls", 32)
      local server = p.server.conn:export_keying_material("EXPERIMENTAL-lunatls", 32)
      assert.equal(32, #client)
      assert.equal(client, server)
      local with_context = p.client.conn:export_keying_material("EXPERIMENTAL-lunatls", 32, "ctx")
      assert.equal(with_context, p.server.conn:export_keying_material("EXPERIMENTAL-lunatls", 32, "ctx"))
      assert.not_equal(client, with_context)
      assert.not_equal(client, p.client.conn:export_keying_material("EXPERIMENTAL-other", 32))
    end)

    it("gives both sides the same bytes in TLS 1.2", function()
      local p = pair.new { client_ctx = pair.client_context { max_version = "tls1.2" } }:connect()
      assert.equal(p.client.conn:export_keying_material("EXPERIMENTAL-x", 64),
                   p.server.conn:export_keying_material("EXPERIMENTAL-x", 64))
    end)

    it("differs between connections", function()
      local a = pair.new():connect()
      local b = pair.new():connect()
      assert.not_equal(a.client.conn:export_keying_material("EXPERIMENTAL-x", 32),
                       b.client.conn:export_keying_material("EXPERIMENTAL-x", 32))
    end)

    it("fails with 'protocol' before the handshake", function()
      local conn = pair.client_context():new_conn { server_name = "localhost" }
      assert.same({ nil, "export_keying_material: the handshake is not done", "protocol" },
        { conn:export_keying_material("EXPERIMENTAL-x", 32) })
    end)
  end)

  describe("accessors", function()
    it("are nil before the handshake and set after", function()
      local p = pair.new { client_ctx = pair.client_context { alpn = { "h2" } },
                           server_ctx = pair.server_context { alpn = { "h2" } } }
      local c = p.client.conn
      assert.is_nil(c:version())
      assert.is_nil(c:cipher())
      assert.is_nil(c:alpn_selected())
      assert.is_nil(c:peer_certificate())
      assert.is_nil(c:session())
      assert.is_false(c:session_reused())
      assert.same({}, c:peer_chain())
      assert.matches("^lunatls.Conn: 0x%x+ %(client, handshake not done%)$", tostring(c))
      p:connect()
      assert.equal("TLSv1.3", c:version())
      assert.equal("TLS_AES_256_GCM_SHA384", c:cipher())
      assert.equal("h2", c:alpn_selected())
      assert.equal("localhost", c:server_name())
      assert.equal("localhost", p.server.conn:server_name())
      assert.matches("^lunatls.Conn: 0x%x+ %(server, handshake done%)$", tostring(p.server.conn))
    end)

    it("bio() is the network end of the connection's own pair, nil with bio=", function()
      local conn = pair.client_context():new_conn { server_name = "localhost" }
      assert.equal(conn:bio(), conn:bio())
      assert.matches("^lunatls.BIO", tostring(conn:bio()))
      local inner = tls.new_bio_pair()
      local given = pair.client_context():new_conn { server_name = "localhost", bio = inner }
      assert.is_nil(given:bio())
    end)
  end)
end)
