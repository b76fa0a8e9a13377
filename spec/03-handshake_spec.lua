-- conn:do_handshake(): every row of design.md section 5's table, each with a
-- real in-process peer (or raw bytes where only raw bytes reach the row).

local tls = require "lunatls"
local pair = require "helpers.pair"

-- A TLS record holding a warning-level close_notify alert.
local CLOSE_NOTIFY_RECORD = "\21\3\3\0\2\1\0"

local function contains(list, wanted)
  for _, value in ipairs(list) do
    if value == wanted then return true end
  end
  return false
end

--- A client connection that has sent its ClientHello (already read off its
-- network end, so nothing will ever answer it).
local function client_after_hello()
  local conn = pair.client_context():new_conn { server_name = "localhost" }
  assert.equal("want_read", conn:do_handshake())
  local hello = assert(conn:bio():read())
  assert.equal(22, hello:byte(1)) -- a handshake record
  return conn
end

describe("do_handshake", function()
  it("returns 'done' on both sides, after 'want_read' while the peer is silent", function()
    local p = pair.new()
    local result = p:handshake()
    assert.same({ "want_read", "done" }, result.client.statuses)
    assert.same({ "want_read", "done" }, result.server.statuses)
    assert.equal("done", p.client.conn:do_handshake()) -- finished stays finished
  end)

  it("returns 'want_read' from a server that has received nothing", function()
    local conn = pair.server_context():new_conn()
    assert.equal("want_read", conn:do_handshake())
    assert.equal(0, conn:bio():pending())
    assert.equal("want_read", conn:do_handshake())
  end)

  it("returns 'want_read' from a client with the ClientHello on its network end", function()
    local conn = pair.client_context():new_conn { server_name = "localhost" }
    assert.equal("want_read", conn:do_handshake())
    assert.is_true(conn:bio():pending() > 100)
  end)

  it("returns 'want_write' when its own BIO pair (buffer_size) is too small, and still finishes", function()
    local p = pair.new { client = { server_name = "localhost", buffer_size = 64 },
                         server = { buffer_size = 64 } }
    local result = p:handshake(500)
    assert.equal("want_write", result.client.statuses[1])
    assert.is_true(contains(result.server.statuses, "want_write"))
    assert.equal("done", result.client.status)
    assert.equal("done", result.server.status)
    assert.equal("ping", p:send(p.client, "ping"))
  end)

  it("returns 'want_write' over a small new_bio_pair(size) given as bio=", function()
    local p = pair.new { client_size = 100, server_size = 100 }
    local result = p:handshake(500)
    assert.equal("want_write", result.client.statuses[1])
    assert.equal("done", result.client.status)
    assert.equal("done", result.server.status)
  end)

  it("works with two connections on the two ends of one small pair", function()
    local client, server = pair.direct(pair.client_context(), pair.server_context(), 128)
    local seen, client_status, server_status = {}, nil, nil
    for _ = 1, 200 do
      if client_status ~= "done" then
        client_status = assert(client:do_handshake())
      else -- the server's session tickets follow its handshake: read them
        assert.same({ nil, "want_read" }, { client:read() })
      end
      if server_status ~= "done" then server_status = assert(server:do_handshake()) end
      seen[client_status], seen[server_status] = true, true
      if client_status == "done" and server_status == "done" then break end
    end
    assert.equal("done", client_status)
    assert.equal("done", server_status)
    assert.is_true(seen.want_write)
    assert.equal(5, client:write("hello"))
    assert.equal("hello", server:read())
  end)

  it("gives nil, message, 'closed' when the peer sends close_notify mid-handshake", function()
    local conn = client_after_hello()
    assert.equal(7, conn:bio():write(CLOSE_NOTIFY_RECORD))
    local ok, message, code = conn:do_handshake()
    assert.is_nil(ok)
    assert.equal("closed", code)
    assert.equal("do_handshake: the peer closed the connection (close_notify)", message)
  end)

  it("gives 'eof' when the peer shuts its network end down mid-handshake", function()
    local conn = client_after_hello()
    assert.is_true(conn:bio():shutdown_write())
    local ok, message, code = conn:do_handshake()
    assert.is_nil(ok)
    assert.equal("eof", code)
    assert.matches("^do_handshake: unexpected eof", message)
  end)

  it("gives 'eof' when the server's peer vanishes after a partial ClientHello", function()
    local client = pair.client_context():new_conn { server_name = "localhost" }
    local server = pair.server_context():new_conn()
    client:do_handshake()
    local hello = client:bio():read()
    assert.equal(20, server:bio():write(hello:sub(1, 20)))
    assert.equal("want_read", server:do_handshake())
    server:bio():shutdown_write()
    local ok, message, code = server:do_handshake()
    assert.is_nil(ok)
    assert.equal("eof", code)
    assert.matches("unexpected eof", message)
  end)

  it("gives 'eof' when the network end is closed mid-handshake", function()
    local conn = client_after_hello()
    conn:bio():close()
    local ok, message, code = conn:do_handshake()
    assert.is_nil(ok)
    assert.equal("eof", code)
    assert.equal("do_handshake: unexpected eof: the network end of the BIO pair was closed", message)
  end)

  it("gives 'verify' with the X509 reason on a host name mismatch", function()
    local p = pair.new { server_ctx = pair.server_context {
      certificate = pair.fixture("wronghost.pem"), key = pair.fixture("wronghost.key") } }
    local result = p:handshake()
    assert.is_nil(result.client.status)
    assert.equal("verify", result.client.code)
    assert.equal("do_handshake: certificate verify failed: hostname mismatch (expected 'localhost'; "
      .. "the certificate is for wrong.example)", result.client.message)
    -- the server hears the client's alert
    assert.equal("protocol", result.server.code)
    assert.equal("do_handshake: sslv3 alert bad certificate", result.server.message)
  end)

  it("gives 'protocol' on garbage bytes", function()
    local conn = pair.server_context():new_conn()
    conn:bio():write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    local ok, message, code = conn:do_handshake()
    assert.is_nil(ok)
    assert.equal("protocol", code)
    assert.equal("do_handshake: http request", message)
  end)

  it("gives 'protocol' on random binary garbage at the client", function()
    local conn = client_after_hello()
    conn:bio():write("\22\3\3\0\5garbagegarbage")
    local ok, message, code = conn:do_handshake()
    assert.is_nil(ok)
    assert.equal("protocol", code)
    assert.matches("^do_handshake: ", message)
  end)

  it("gives 'protocol' when the versions do not overlap (TLS 1.2-only client, TLS 1.3-only server)", function()
    local p = pair.new {
      client_ctx = pair.client_context { max_version = "tls1.2" },
      server_ctx = pair.server_context { min_version = "tls1.3" },
    }
    local result = p:handshake()
    assert.equal("protocol", result.server.code)
    assert.equal("do_handshake: unsupported protocol", result.server.message)
    assert.equal("protocol", result.client.code)
    assert.equal("do_handshake: tlsv1 alert protocol version", result.client.message)
  end)

  it("gives 'protocol' when there is no shared cipher", function()
    local p = pair.new {
      client_ctx = pair.client_context { max_version = "tls1.2", ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" },
      server_ctx = pair.server_context { ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384" },
    }
    local result = p:handshake()
    assert.equal("protocol", result.server.code)
    assert.equal("do_handshake: no shared cipher", result.server.message)
    assert.equal("protocol", result.client.code)
    assert.equal("do_handshake: sslv3 alert handshake failure", result.client.message)
  end)

  it("never lets plaintext through a failed handshake", function()
    local p = pair.new { server_ctx = pair.server_context {
      certificate = pair.fixture("selfsigned.pem"), key = pair.fixture("selfsigned.key") } }
    local result = p:handshake()
    assert.equal("verify", result.client.code)
    local ok, _, code = p.client.conn:write("secret")
    assert.is_nil(ok)
    assert.is_not_nil(code)
    assert.is_nil(p.client.conn:version())
    assert.is_nil(p.client.conn:cipher())
  end)

  it("keeps the context's role after set_connect_state / set_accept_state", function()
    local p = pair.new()
    p.client.conn:set_connect_state()
    p.server.conn:set_accept_state()
    p:connect()
    assert.equal("TLSv1.3", p.client.conn:version())
  end)

  it("reports a role the context's method cannot play as 'protocol', without crashing", function()
    -- contexts are made with TLS_client_method / TLS_server_method
    local conn = pair.client_context { verify = "none" }:new_conn()
    conn:set_accept_state()
    local ok, message, code = conn:do_handshake()
    assert.is_nil(ok)
    assert.equal("protocol", code)
    assert.equal("do_handshake: called a function you should not call", message)
  end)
end)
