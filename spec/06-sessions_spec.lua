-- Session resumption: within one context, across an export to text, in
-- TLS 1.2 and 1.3, and the server's session_cache / tickets switches.

local tls = require "lunatls"
local pair = require "helpers.pair"

--- Connects a new pair and returns it with the client's session (in TLS 1.3
-- the ticket comes after the handshake: a read processes it).
local function first_connection(client_ctx, server_ctx)
  local p = pair.new { client_ctx = client_ctx, server_ctx = server_ctx }:connect()
  if p.client.conn:version() == "TLSv1.3" then
    assert.same({ nil, "want_read" }, { p.client.conn:read() })
  end
  return p, p.client.conn:session()
end

--- Connects again offering `session`; returns the pair.
local function resumed_connection(client_ctx, server_ctx, session)
  return pair.new { client_ctx = client_ctx, server_ctx = server_ctx,
                    client = { server_name = "localhost", session = session } }:connect()
end

local TLS12 = { max_version = "tls1.2" }

describe("sessions", function()
  it("resume in TLS 1.3 within one context", function()
    local client_ctx, server_ctx = pair.client_context(), pair.server_context()
    local first, session = first_connection(client_ctx, server_ctx)
    assert.is_false(first.client.conn:session_reused())
    assert.is_true(session:is_resumable())
    assert.equal("TLSv1.3", session:protocol())
    local second = resumed_connection(client_ctx, server_ctx, session)
    assert.is_true(second.client.conn:session_reused())
    assert.is_true(second.server.conn:session_reused())
    assert.equal("TLSv1.3", second.client.conn:version())
    assert.equal("resumed", second:send(second.client, "resumed"))
  end)

  it("in TLS 1.3 are resumable only once the ticket, sent after the handshake, has been read", function()
    local p = pair.new():connect()
    local before = p.client.conn:session()
    assert.is_false(before ~= nil and before:is_resumable())
    assert.same({ nil, "want_read" }, { p.client.conn:read() })
    assert.is_true(p.client.conn:session():is_resumable())
  end)

  it("resume in TLS 1.2 within one context", function()
    local client_ctx, server_ctx = pair.client_context(TLS12), pair.server_context()
    local first, session = first_connection(client_ctx, server_ctx)
    assert.equal("TLSv1.2", first.client.conn:version())
    assert.equal("TLSv1.2", session:protocol())
    local second = resumed_connection(client_ctx, server_ctx, session)
    assert.is_true(second.client.conn:session_reused())
    assert.is_true(second.server.conn:session_reused())
  end)

  it("export to PEM text and import back with tls.import_session", function()
    local client_ctx, server_ctx = pair.client_context(), pair.server_context()
    local _, session = first_connection(client_ctx, server_ctx)
    local text = session:export()
    assert.matches("^%-%-%-%-%-BEGIN SSL SESSION PARAMETERS%-%-%-%-%-\n", text)
    assert.matches("%-%-%-%-%-END SSL SESSION PARAMETERS%-%-%-%-%-\n$", text)
    local imported = assert(tls.import_session(text))
    assert.is_true(imported:is_resumable())
    assert.equal("TLSv1.3", imported:protocol())
    assert.equal(text, imported:export())
    local second = resumed_connection(client_ctx, server_ctx, imported)
    assert.is_true(second.client.conn:session_reused())
  end)

  it("import gives nil, message, 'config' for text that is not a session", function()
    assert.same({ nil, "import_session: not a session: no start line (Expecting: SSL SESSION PARAMETERS)",
                  "config" }, { tls.import_session("garbage") })
    local ok, message, code = tls.import_session(
      "-----BEGIN SSL SESSION PARAMETERS-----\nAAAA\n-----END SSL SESSION PARAMETERS-----\n")
    assert.is_nil(ok)
    assert.equal("config", code)
    assert.matches("^import_session: not a session: ", message)
  end)

  it("do not resume with a server context that did not issue them", function()
    local client_ctx = pair.client_context()
    local _, session = first_connection(client_ctx, pair.server_context())
    local second = resumed_connection(client_ctx, pair.server_context(), session)
    assert.is_false(second.client.conn:session_reused())
    assert.equal("full handshake", second:send(second.client, "full handshake"))
  end)

  describe("server switches", function()
    -- server options, TLS version options of the client, expected reuse
    local cases = {
      { {}, TLS12, true, "on by default (TLS 1.2)" },
      { { tickets = false }, TLS12, true, "resume from the cache without tickets (TLS 1.2)" },
      { { session_cache = false }, TLS12, true, "resume from a ticket without the cache (TLS 1.2)" },
      { { tickets = false, session_cache = false }, TLS12, false, "do not resume with both off (TLS 1.2)" },
      { { tickets = false }, {}, true, "resume from the cache without tickets (TLS 1.3, stateful tickets)" },
      { { session_cache = false }, {}, true, "resume from a ticket without the cache (TLS 1.3)" },
      { { tickets = false, session_cache = false }, {}, false, "do not resume with both off (TLS 1.3)" },
    }
    for _, case in ipairs(cases) do
      local server_opts, client_opts, reused, title = case[1], case[2], case[3], case[4]
      it(title, function()
        local client_ctx, server_ctx = pair.client_context(client_opts), pair.server_context(server_opts)
        local _, session = first_connection(client_ctx, server_ctx)
        local second = resumed_connection(client_ctx, server_ctx, session)
        assert.equal(reused, second.client.conn:session_reused())
        assert.equal(reused, second.server.conn:session_reused())
      end)
    end

    it("make a TLS 1.2 session not resumable when both are off", function()
      local _, session = first_connection(pair.client_context(TLS12),
        pair.server_context { tickets = false, session_cache = false })
      assert.is_false(session:is_resumable())
    end)
  end)

  it("stay resumable when the connection is closed without close_notify", function()
    local client_ctx, server_ctx = pair.client_context(), pair.server_context()
    local first, session = first_connection(client_ctx, server_ctx)
    first.client.conn:close() -- no shutdown(): close never does I/O
    first.server.conn:close()
    assert.is_true(session:is_resumable())
    assert.is_true(resumed_connection(client_ctx, server_ctx, session).client.conn:session_reused())
  end)

  it("are spoiled by a fatal error on their connection", function()
    local first, session = first_connection(pair.client_context(), pair.server_context())
    first.client.net:write("\23\3\3\0\5junk!") -- an application record that fails to decrypt
    local ok, _, code = first.client.conn:read()
    assert.is_nil(ok)
    assert.equal("protocol", code)
    assert.is_false(session:is_resumable())
  end)

  it("outlive their connection and context", function()
    local client_ctx, server_ctx = pair.client_context(), pair.server_context()
    local first, session = first_connection(client_ctx, server_ctx)
    first.client.conn:close()
    first = nil -- luacheck: ignore
    collectgarbage()
    assert.matches("^lunatls.Session: 0x%x+ %(resumable%)$", tostring(session))
    assert.is_true(resumed_connection(client_ctx, server_ctx, session).client.conn:session_reused())
  end)
end)
