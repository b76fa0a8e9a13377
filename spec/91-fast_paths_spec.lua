--- The hot paths the benchmark optimised (bench/README.md) keep the API's
-- behaviour: BIO reads that wrap around the ring, read() gathering records,
-- writes that fill the pair, status words, and the checks on self.

local tls = require "lunatls"

local fixtures = "spec/fixtures/"

local server_ctx = assert(tls.new_context {
  mode = "server", certificate = fixtures .. "server.pem", key = fixtures .. "server.key",
})
local client_ctx = assert(tls.new_context { mode = "client", cafile = fixtures .. "ca.pem" })

local function pump(from, to)
  local data = from:read()
  if data then assert.equal(#data, to:write(data)) end
end

--- A connected pair (the server's tickets read), on BIO pairs of `size`.
local function connected(size)
  local client = client_ctx:new_conn { server_name = "localhost", buffer_size = size }
  local server = server_ctx:new_conn { buffer_size = size }
  local cnet, snet = client:bio(), server:bio()
  local cdone, sdone
  for _ = 1, 10 do
    cdone = cdone or client:do_handshake() == "done"
    pump(cnet, snet)
    sdone = sdone or server:do_handshake() == "done"
    pump(snet, cnet)
  end
  assert.is_true(cdone and sdone)
  assert.same({ nil, "want_read" }, { client:read() })
  return client, server, cnet, snet
end

describe("bio:read()", function()
  it("returns the bytes in order when they wrap around the end of the ring", function()
    local a, b = tls.new_bio_pair(10)
    assert.equal(8, a:write("abcdefgh"))
    assert.equal("abcdef", b:read(6))
    assert.equal(8, a:write("ijklmnop")) -- 2 at the end of the ring, 6 at its start
    assert.equal(10, b:pending())
    assert.equal("ghijklmnop", b:read())
    assert.same({ nil, "want_read" }, { b:read() })
  end)

  it("takes at most max bytes, across the wrap too", function()
    local a, b = tls.new_bio_pair(10)
    a:write("0123456789")
    assert.equal("0123456", b:read(7))
    a:write("abcde")
    assert.equal("789ab", b:read(5))
    assert.equal("cde", b:read(100))
  end)

  it("says closed once the other end shut down writing and all is read", function()
    local a, b = tls.new_bio_pair()
    a:write("xy")
    a:shutdown_write()
    assert.equal("xy", b:read())
    assert.same({ nil, "closed" }, { b:read() })
  end)
end)

describe("conn:read()", function()
  local client, server, cnet, snet, sent

  before_each(function()
    client, server, cnet, snet = connected(1024 * 1024)
    local parts = {}
    for i = 1, 40 do
      parts[i] = string.rep(string.char(65 + i % 26), 1000)
      assert.equal(1000, client:write(parts[i]))
    end
    sent = table.concat(parts)
    pump(cnet, snet)
  end)

  it("gathers the records already here, up to 16384 bytes by default", function()
    local got = server:read()
    assert.equal(16384, #got)
    assert.equal(sent:sub(1, 16384), got)
  end)

  it("gathers past 16384 bytes when max allows, and stops at max", function()
    assert.equal(sent:sub(1, 20000), server:read(20000))
    assert.equal(sent:sub(20001, 20005), server:read(5))
    assert.equal(sent:sub(20006), server:read(1e9))
    assert.same({ nil, "want_read" }, { server:read() })
  end)

  it("returns one whole record of 16384 bytes and the next one after it", function()
    local big = string.rep("z", 16384)
    server:read(1e9)
    assert.equal(16384, client:write(big))
    assert.equal(4, client:write("tail"))
    pump(cnet, snet)
    assert.equal(big .. "tail", server:read(100000))
    assert.same({ nil, "want_read" }, { server:read() })
  end)
end)

describe("conn:write()", function()
  it("says want_write when the pair is full and finishes the record after a pump", function()
    local client, server, cnet, snet = connected(nil)
    local chunk = string.rep("x", 1024)
    local written, status = 0, nil
    for _ = 1, 100 do
      local n, st = client:write(chunk)
      if not n then
        status = st
        break
      end
      written = written + n
    end
    assert.equal("want_write", status)
    assert.is_true(written >= 16 * 1024)
    local function read_all()
      local got = 0
      while true do
        local data, st = server:read()
        if not data then
          assert.equal("want_read", st)
          return got
        end
        got = got + #data
      end
    end
    pump(cnet, snet)
    local got = read_all()
    assert.equal(1024, client:write(chunk)) -- the same bytes again
    pump(cnet, snet)
    got = got + read_all()
    assert.equal(written + 1024, got)
  end)
end)

describe("conn:close()", function()
  it("leaves the network end of its own pair answering closed (its buffer is released)", function()
    local conn = client_ctx:new_conn { server_name = "localhost" }
    assert.equal("want_read", conn:do_handshake())
    local net = conn:bio()
    assert.is_true(net:pending() > 0)
    conn:close()
    assert.same({ nil, "closed" }, { net:read() })
    assert.same({ nil, "closed" }, { net:write("x") })
    assert.equal(0, net:pending())
    assert.equal(0, net:write_guarantee())
    net:close()
    assert.has_error(function() net:read() end, "attempt to use a closed lunatls.BIO")
  end)

  it("leaves a pair the application made alone", function()
    local inner, outer = tls.new_bio_pair()
    local conn = client_ctx:new_conn { server_name = "localhost", bio = inner }
    assert.equal("want_read", conn:do_handshake())
    local hello = outer:read()
    assert.is_true(#hello > 0)
    conn:close()
    assert.equal(5, outer:write("hello"))
    assert.equal("hello", inner:read())
  end)
end)

describe("methods", function()
  it("reject the wrong self with the usual message", function()
    local conn = client_ctx:new_conn { server_name = "localhost" }
    local a = tls.new_bio_pair()
    assert.has_error(function() conn.read(a) end,
      "bad argument #1 to 'read' (lunatls.Conn expected, got lunatls.BIO)")
    assert.error_matches(function() a.read(conn) end, "lunatls.BIO expected, got lunatls.Conn")
    assert.error_matches(function() conn.write(nil, "x") end, "lunatls.Conn expected, got nil")
  end)

  it("raise on a closed object", function()
    local conn = client_ctx:new_conn { server_name = "localhost" }
    local a = tls.new_bio_pair()
    conn:close()
    a:close()
    assert.has_error(function() conn:read() end, "attempt to use a closed lunatls.Conn")
    assert.has_error(function() conn:bio() end, "attempt to use a closed lunatls.Conn")
    assert.has_error(function() a:read() end, "attempt to use a closed lunatls.BIO")
  end)

  it("return the status words", function()
    local conn = client_ctx:new_conn { server_name = "localhost" }
    assert.equal("want_read", conn:do_handshake())
    assert.same({ nil, "want_read" }, { conn:read() })
    local client, server, cnet, snet = connected(nil)
    assert.equal("done", client:do_handshake())
    assert.equal("want_read", client:shutdown())
    pump(cnet, snet)
    assert.same({ nil, "closed" }, { server:read() })
    assert.equal("done", server:shutdown())
  end)
end)
