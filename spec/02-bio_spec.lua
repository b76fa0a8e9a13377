-- tls.new_bio_pair([size]): two ends, a fixed buffer each way, nothing dropped.

local tls = require "lunatls"
local pair = require "helpers.pair"

describe("new_bio_pair", function()
  it("carries bytes from one end to the other, both ways", function()
    local a, b = tls.new_bio_pair()
    assert.equal(5, a:write("hello"))
    assert.equal(5, b:pending())
    assert.equal(0, a:pending())
    assert.equal("hello", b:read())
    assert.equal(3, b:write("abc"))
    assert.equal("abc", a:read())
  end)

  it("says want_read when empty", function()
    local a, b = tls.new_bio_pair()
    assert.same({ nil, "want_read" }, { a:read() })
    assert.same({ nil, "want_read" }, { b:read() })
  end)

  it("takes fewer bytes than offered when the buffer fills, and drops nothing", function()
    local a, b = tls.new_bio_pair(10)
    assert.equal(10, a:write("0123456789abc"))
    assert.equal(0, a:write_guarantee())
    assert.equal(0, a:write("x"))
    assert.equal("0123", b:read(4))
    assert.equal(4, a:write_guarantee())
    assert.equal(3, a:write("abc"))
    assert.equal("456789abc", b:read())
    assert.same({ nil, "want_read" }, { b:read() })
  end)

  it("has 17 KiB buffers by default (one whole TLS record)", function()
    local a = tls.new_bio_pair()
    assert.equal(17 * 1024, a:write_guarantee())
  end)

  it("reads at most max bytes", function()
    local a, b = tls.new_bio_pair(100)
    a:write(string.rep("z", 50))
    assert.equal(string.rep("z", 7), b:read(7))
    assert.equal(43, b:pending())
    assert.equal(string.rep("z", 43), b:read(1000))
  end)

  it("wraps around its ring buffer without losing order", function()
    local a, b = tls.new_bio_pair(16)
    local sent, received = {}, {}
    for i = 1, 200 do
      local chunk = ("%03d,"):format(i)
      local offset = 1
      while offset <= #chunk do
        local n = a:write(chunk:sub(offset))
        offset = offset + n
        if n == 0 then received[#received + 1] = b:read(5) end
      end
      sent[#sent + 1] = chunk
    end
    received[#received + 1] = b:read()
    assert.equal(table.concat(sent), table.concat(received))
  end)

  it("write('') takes 0 bytes", function()
    local a, b = tls.new_bio_pair()
    assert.equal(0, a:write(""))
    assert.equal(0, b:pending())
  end)

  it("signals end of stream with shutdown_write, after the data", function()
    local a, b = tls.new_bio_pair()
    a:write("last words")
    assert.is_true(a:shutdown_write())
    assert.equal("last words", b:read())
    assert.same({ nil, "closed" }, { b:read() })
    assert.same({ nil, "closed" }, { a:write("more") })
    -- the other direction still works
    assert.equal(4, b:write("back"))
    assert.equal("back", a:read())
  end)

  it("reports read_request: what the connection's failed read asked for", function()
    local conn = pair.server_context():new_conn()
    assert.equal("want_read", conn:do_handshake())
    assert.equal(5, conn:bio():read_request()) -- a record header
    conn:bio():write("\22\3\1")
    assert.equal("want_read", conn:do_handshake())
    assert.equal(2, conn:bio():read_request()) -- the rest of the header
  end)

  it("closes: methods raise, close is idempotent, the other end reads 'closed'", function()
    local a, b = tls.new_bio_pair()
    b:close()
    b:close()
    assert.equal("lunatls.BIO (closed)", tostring(b))
    assert.matches("^lunatls.BIO: 0x%x+ %(0 bytes pending%)$", tostring(a))
    for _, method in ipairs { "read", "pending", "write_guarantee", "read_request", "shutdown_write" } do
      assert.has_error(function() b[method](b) end, "attempt to use a closed lunatls.BIO")
    end
    assert.has_error(function() b:write("x") end, "attempt to use a closed lunatls.BIO")
    assert.same({ nil, "closed" }, { a:read() })
    assert.same({ nil, "closed" }, { a:write("x") })
  end)

  it("closes at the end of a scope with <close>", function()
    local a_seen, b
    do
      local a <close>, other = tls.new_bio_pair()
      a_seen, b = a, other
      assert.equal(1, a:write("x"))
    end
    assert.equal("lunatls.BIO (closed)", tostring(a_seen))
    -- closing an end frees the pair: what it wrote and was not read is gone
    -- (shutdown_write is the orderly end of stream)
    assert.same({ nil, "closed" }, { b:read() })
  end)

  it("checks its arguments", function()
    pair.assert_bad_argument(function() tls.new_bio_pair(0) end, 1, "new_bio_pair",
      "size must be between 1 and 64 MiB")
    pair.assert_bad_argument(function() tls.new_bio_pair(64 * 1024 * 1024 + 1) end, 1, "new_bio_pair",
      "size must be between 1 and 64 MiB")
    pair.assert_bad_argument(function() tls.new_bio_pair("big") end, 1, "new_bio_pair",
      "number expected, got string")
    local a = tls.new_bio_pair()
    pair.assert_bad_argument(function() a:read(0) end, 1, "read", "max must be positive")
    pair.assert_bad_argument(function() a:write(nil) end, 1, "write", "string or lunatls.Buffer expected, got nil")
    pair.assert_bad_argument(function() a.write(42, "x") end, 1, "write", "lunatls.BIO expected, got number")
    pair.assert_bad_argument(function() a.read({}) end, 1, "read", "lunatls.BIO expected, got table")
  end)
end)
