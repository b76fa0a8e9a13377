-- Moving bytes without copying them into Lua strings: write(data, i, j) on
-- connections and BIO ends (a retry after a partial write names the rest
-- of the same string), bio:move_to(other) from one BIO end to another, and
-- conn:read_into(buffer) with the Buffer it fills (sent on by write).

local tls = require "lunatls"
local pair = require "helpers.pair"

describe("write(data, i, j)", function()
  it("on a BIO end takes data:sub(i, j), string.sub's rules", function()
    local a, b = tls.new_bio_pair(100)
    local text = "hello world"
    for _, range in ipairs { { 7 }, { 1, 5 }, { -5, -3 }, { 0, 2 }, { -100, 3 }, { 5, 100 } } do
      local expected = text:sub(range[1], range[2])
      assert.equal(#expected, a:write(text, range[1], range[2]))
      assert.equal(expected, b:read())
    end
    assert.equal(0, a:write(text, 6, 5)) -- empty
    assert.same({ nil, "want_read" }, { b:read() })
  end)

  it("on a connection, the rest of one string after partial writes", function()
    local client, server = pair.direct(pair.client_context(), pair.server_context(), 4096)
    for _ = 1, 20 do
      client:do_handshake(); server:do_handshake()
    end
    local data = ("0123456789"):rep(10000) -- 100 KB through a 4 KiB pair
    local at, got = 1, {}
    while at <= #data or #table.concat(got) < #data do
      if at <= #data then
        local n = client:write(data, at)
        if n then at = at + n end
      end
      local chunk = server:read()
      if chunk then got[#got + 1] = chunk end
    end
    assert.equal(data, table.concat(got))
  end)

  it("checks its positions", function()
    local a = tls.new_bio_pair()
    pair.assert_bad_argument(function() a:write("x", "y") end, 2, "write", "number expected, got string")
  end)
end)

describe("bio:move_to(other)", function()
  it("moves as much as the other end takes, and nothing more", function()
    local a1, a2 = tls.new_bio_pair(100)
    local b1, b2 = tls.new_bio_pair(50)
    assert.equal(80, a1:write(("x"):rep(70) .. ("y"):rep(10)))
    assert.equal(50, a2:move_to(b1))
    assert.equal(30, a2:pending())
    assert.equal(("x"):rep(50), b2:read())
    assert.equal(30, a2:move_to(b1))
    assert.equal(("x"):rep(20) .. ("y"):rep(10), b2:read())
    assert.equal(0, a2:move_to(b1)) -- nothing to move
  end)

  it("honours max, and moves across the ring's wrap", function()
    local a1, a2 = tls.new_bio_pair(10)
    local b1, b2 = tls.new_bio_pair(100)
    a1:write("abcdefgh")
    assert.equal("abcdef", a2:read(6))
    a1:write("ijklmn") -- wraps around the 10-byte ring
    assert.equal(3, a2:move_to(b1, 3))
    assert.equal(5, a2:move_to(b1))
    assert.equal("ghijklmn", b2:read())
  end)

  it("says closed when the other end is gone or shut down", function()
    local a1, a2 = tls.new_bio_pair()
    local b1, b2 = tls.new_bio_pair()
    a1:write("data")
    b2:close()
    assert.same({ nil, "closed" }, { a2:move_to(b1) })
    assert.equal(4, a2:pending()) -- nothing lost
  end)

  it("carries a whole TLS conversation between two connections' own pairs", function()
    local p = pair.new()
    for _ = 1, 10 do
      p.client.conn:do_handshake(); p.server.conn:do_handshake()
      p.client.net:move_to(p.server.net)
      p.server.net:move_to(p.client.net)
    end
    assert.equal("TLSv1.3", p.client.conn:version())
    p.client.conn:write("over move_to")
    p.client.net:move_to(p.server.net)
    assert.equal("over move_to", p.server.conn:read())
  end)
end)

describe("tls.new_buffer(capacity)", function()
  it("is empty, with the capacity asked for", function()
    local buffer = tls.new_buffer(100)
    assert.equal(0, #buffer)
    assert.equal(0, buffer:len())
    assert.equal(100, buffer:capacity())
    assert.equal("", buffer:tostring())
    assert.matches("^lunatls.Buffer: 0x%x+ %(0 of 100 bytes%)$", tostring(buffer))
  end)

  it("refuses a capacity out of range", function()
    for _, capacity in ipairs { 0, -1, (1 << 30) + 1, math.maxinteger } do
      pair.assert_bad_argument(function() tls.new_buffer(capacity) end, 1, "new_buffer",
        "capacity must be between 1 and 1073741824")
    end
    pair.assert_bad_argument(function() tls.new_buffer("big") end, 1, "new_buffer", "number expected, got string")
  end)
end)

describe("conn:read_into(buffer)", function()
  local function connected()
    local p = pair.new { client_size = 1 << 20, server_size = 1 << 20 }:connect()
    p:pump()
    p.client.conn:read() -- TLS 1.3 tickets
    return p
  end

  --- The server writes each part as its own record; all reach the client.
  local function deliver(p, parts)
    for _, part in ipairs(parts) do assert.equal(#part, p.server.conn:write(part)) end
    p.server.net:move_to(p.client.net)
  end

  it("fills the buffer with the records that are here, replacing what it held", function()
    local p = connected()
    local buffer = tls.new_buffer(16384)
    deliver(p, { "one", "two", "three" })
    assert.equal(11, p.client.conn:read_into(buffer))
    assert.equal("onetwothree", buffer:tostring())
    assert.equal("two", buffer:tostring(4, 6))
    assert.equal("three", buffer:tostring(-5))
    deliver(p, { "four" })
    assert.equal(4, p.client.conn:read_into(buffer))
    assert.equal("four", buffer:tostring())
    assert.same({ nil, "want_read" }, { p.client.conn:read_into(buffer) })
    assert.equal(0, #buffer)
  end)

  it("stops at its capacity, or at max, and the rest waits", function()
    local p = connected()
    local buffer = tls.new_buffer(10)
    local data = ("0123456789"):rep(5000) -- 50 KB: four records
    assert.equal(#data, p.server.conn:write(data))
    p.server.net:move_to(p.client.net)
    local got = {}
    assert.equal(4, p.client.conn:read_into(buffer, 4))
    got[1] = buffer:tostring()
    while true do
      local n, status = p.client.conn:read_into(buffer)
      if not n then
        assert.equal("want_read", status)
        break
      end
      assert.is_true(n <= 10)
      got[#got + 1] = buffer:tostring()
    end
    assert.equal(data, table.concat(got))
  end)

  it("returns the close_notify as closed, like read", function()
    local p = connected()
    local buffer = tls.new_buffer(100)
    deliver(p, { "last words" })
    p.server.conn:shutdown()
    p.server.net:move_to(p.client.net)
    assert.equal(10, p.client.conn:read_into(buffer))
    assert.same({ nil, "closed" }, { p.client.conn:read_into(buffer) })
  end)

  it("forwards what it read through write(buffer, i, j) without a string", function()
    local front, back = connected(), connected()
    local buffer = tls.new_buffer(16384)
    local data = ("forward me "):rep(3000) -- 33 KB
    assert.equal(#data, front.server.conn:write(data))
    front.server.net:move_to(front.client.net)
    local got = {}
    while true do
      local n = front.client.conn:read_into(buffer)
      if not n then break end
      -- the relay writes the buffer in two parts, positions as string.sub's
      local half = n // 2
      assert.equal(half, back.client.conn:write(buffer, 1, half))
      assert.equal(n - half, back.client.conn:write(buffer, half + 1))
      back.client.net:move_to(back.server.net)
      got[#got + 1] = back.server.conn:read(1 << 20)
    end
    assert.equal(data, table.concat(got))
    assert.equal(0, #buffer) -- the last read_into found nothing
    assert.equal(3, front.server.conn:write("end"))
    front.server.net:move_to(front.client.net)
    assert.equal(3, front.client.conn:read_into(buffer))
    local a, b = tls.new_bio_pair()
    assert.equal(3, a:write(buffer)) -- a BIO end takes a Buffer too
    assert.equal("end", b:read())
  end)

  it("clear() empties it: a write of it then sends nothing", function()
    local p = connected()
    local buffer = tls.new_buffer(100)
    deliver(p, { "abc" })
    assert.equal(3, p.client.conn:read_into(buffer))
    buffer:clear()
    assert.equal(0, #buffer)
    assert.equal(0, p.client.conn:write(buffer))
  end)
end)

describe("bio:send_to(fd) and bio:receive_from(fd): a socket on the other side", function()
  local link = require "helpers.link"
  local socket = require "socket"

  --- Two connected loopback sockets, closed at the end of the test.
  local function sockets()
    local listener, port = link.listen()
    local a = assert(link.connect(port))
    local b = assert(link.accept(listener))
    listener:close()
    finally(function() a:close(); b:close() end)
    return a, b
  end

  it("moves ring to socket and socket to ring, no more than each side takes", function()
    local a, b = sockets()
    local x1, x2 = tls.new_bio_pair(100000)
    local y1, y2 = tls.new_bio_pair(1000)
    assert.same({ nil, "want_read" }, { y1:receive_from(b:getfd()) }) -- nothing sent yet
    local data = ("0123456789"):rep(5000) -- 50 KB
    assert.equal(#data, x1:write(data))
    local sent = 0
    while sent < #data do sent = sent + assert(x2:send_to(a:getfd())) end
    assert.equal(0, x2:pending())
    local received, got, deadline = {}, 0, socket.gettime() + 5
    while got < #data and socket.gettime() < deadline do
      local n, status = y1:receive_from(b:getfd(), 300)
      if n then
        assert.is_true(n <= 300) -- at most max
        if n == 0 then assert.equal(0, y1:write_guarantee()) end -- no room: nothing taken
      else
        assert.equal("want_read", status)
      end
      local piece = y2:read()
      if piece then
        received[#received + 1] = piece
        got = got + #piece
      end
    end
    assert.equal(data, table.concat(received))
    assert.same({ nil, "want_read" }, { y1:receive_from(b:getfd()) })
  end)

  it("says closed at the end of the stream, and eof once the peer is gone", function()
    local a, b = sockets()
    local x1, x2 = tls.new_bio_pair()
    a:shutdown("send")
    assert.same({ nil, "closed" }, { x1:receive_from(b:getfd()) })
    a:close()
    local result
    for _ = 1, 50 do -- the first sends may be taken; the peer's reset then says it is gone
      x2:write(("z"):rep(1000))
      result = { x1:send_to(b:getfd()) }
      if result[1] == nil then break end
      socket.sleep(0.01)
    end
    assert.same({ nil, "send: the peer closed the connection", "eof" }, result)
  end)

  it("checks its arguments, and reports a descriptor that is no socket", function()
    local x1, x2 = tls.new_bio_pair()
    pair.assert_bad_argument(function() x1:send_to(-1) end, 1, "send_to", "not a socket descriptor")
    pair.assert_bad_argument(function() x1:receive_from("x") end, 1, "receive_from",
      "number expected, got string")
    pair.assert_bad_argument(function() x1:receive_from(0, 0) end, 2, "receive_from", "max must be positive")
    local file = assert(io.open("spec/fixtures/ca.pem"))
    finally(function() file:close() end)
    x2:write("data")
    local _, message, code = x1:send_to(0) -- stdin: not a socket
    assert.equal("syscall", code)
    assert.matches("^send: ", message)
    assert.equal(4, x1:pending()) -- nothing lost
  end)

  it("the socket transport reads what LuaSocket buffered before the stream began (STARTTLS)", function()
    local a, b = sockets()
    local scheduler = require "lunatls.scheduler"
    local transport = require "lunatls.transport.socket"
    local client = tls.wrap(transport.new(a), pair.client_context(), { server_name = "localhost", timeout = 10 })
    local server, line
    local sched = scheduler.new()
    sched:spawn(function()
      -- the plaintext line and the ClientHello leave in one go; the server's
      -- line read pulls both into LuaSocket's buffer
      a:send("STARTTLS\n")
      assert(client:handshake())
      assert.equal(5, client:send("hello"))
    end)
    sched:spawn(function()
      b:settimeout(5)
      line = b:receive("*l")
      server = tls.wrap(transport.new(b), pair.server_context(), { timeout = 10 })
      assert.equal("hello", server:receive(5))
    end)
    assert(sched:run(30))
    assert.equal("STARTTLS", line)
  end)
end)

describe("tls.release_memory()", function()
  local rss_kib = require("helpers.process").rss_kib

  -- Under ASan or valgrind the allocator is theirs, not glibc's: only the
  -- result's type can be checked there.
  local glibc_allocator = os.getenv("LUNATLS_SANITIZER") == nil
                          or os.getenv("LUNATLS_SANITIZER") == "gcstress"

  it("gives back what 2,000 finished pairs left in glibc's heap", function()
    local ends = {}
    for i = 1, 2000 do
      local a, b = tls.new_bio_pair()
      a:write(("x"):rep(16 * 1024)) -- a ring of 17 KiB each, freed when read
      ends[i] = { a, b }
    end
    local busy = rss_kib()
    for i = 1, #ends do
      assert.equal(16 * 1024, #ends[i][2]:read(16 * 1024))
      ends[i] = false -- the pair is garbage now
    end
    collectgarbage()
    collectgarbage()
    local freed = rss_kib()
    local returned = tls.release_memory()
    assert.is_boolean(returned)
    if glibc_allocator then
      local after = rss_kib()
      assert.is_true(returned)
      -- 2,000 rings are 34 MB: at least half of it goes back to the system
      assert.is_true(freed - after > 16 * 1024,
        ("RSS %d KiB busy, %d freed, %d released"):format(busy, freed, after))
    end
  end)

  it("gives back, in one call, the Lua memory of the objects it finalizes", function()
    -- Lua frees a finalized object only in the collection after the one
    -- that ran its finalizer: one collection would leave ~560 KiB here.
    collectgarbage()
    collectgarbage()
    local ctx = pair.client_context()
    local before = collectgarbage("count")
    do
      local conns = {}
      for i = 1, 2000 do
        conns[i] = ctx:new_conn { server_name = "localhost" }
        conns[i]:do_handshake()
      end
    end
    tls.release_memory()
    local after = collectgarbage("count")
    assert.is_true(after - before < 64, ("Lua heap %.0f KiB before, %.0f after"):format(before, after))
  end)

  it("leaves live objects working", function()
    local p = pair.new():connect()
    tls.release_memory()
    assert.equal("still here", p:send(p.client, "still here"))
  end)
end)
