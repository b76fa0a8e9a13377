-- Moving bytes without copying them into Lua strings: write(data, i, j) on
-- connections and BIO ends (a retry after a partial write names the rest
-- of the same string), and bio:move_to(other) from one BIO end to another.

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

  it("leaves live objects working", function()
    local p = pair.new():connect()
    tls.release_memory()
    assert.equal("still here", p:send(p.client, "still here"))
  end)
end)
