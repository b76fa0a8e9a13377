--- The fuzz targets' drivers (fuzz/*.lua) run inside busted: every stored
-- input of fuzz/regressions/<target>/ (each a crash or invariant failure
-- the fuzzer once found) and of the corpus fuzz/corpus/<target>/, through
-- the same module build as the rest of the suite, so `make asan`,
-- `make valgrind` and `make gcstress` replay them too. Under valgrind only
-- the regressions and the seeds are replayed (the whole corpus takes
-- minutes there; `make fuzz-smoke` replays it under ASan anyway).
-- Below them, the bugs the fuzzers found, each as a plain test.

local core = require "lunatls.core"

package.path = "./fuzz/?.lua;" .. package.path
local FIXTURES = "spec/fixtures/"

local function list(dir)
  local names = {}
  local p = io.popen('ls -1 "' .. dir .. '" 2>/dev/null')
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  table.sort(names)
  return names
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local under_valgrind = os.getenv("LUNATLS_SANITIZER") == "valgrind"

for _, target in ipairs { "client", "server", "api" } do
  describe("fuzz target " .. target, function()
    local run = dofile("fuzz/" .. target .. ".lua")(core, FIXTURES)

    it("replays every stored regression input", function()
      for _, name in ipairs(list("fuzz/regressions/" .. target)) do
        local ok, err = pcall(run, read("fuzz/regressions/" .. target .. "/" .. name))
        assert(ok, name .. ": " .. tostring(err))
        collectgarbage()
      end
    end)

    it("replays its corpus" .. (under_valgrind and " (seeds only under valgrind)" or ""), function()
      local names = list("fuzz/corpus/" .. target)
      assert.is_true(#names > 0, "empty corpus: run lua5.4 fuzz/seeds.lua")
      local replayed = 0
      for _, name in ipairs(names) do
        if not under_valgrind or name:match("^seed%-") then
          local ok, err = pcall(run, read("fuzz/corpus/" .. target .. "/" .. name))
          assert(ok, name .. ": " .. tostring(err))
          replayed = replayed + 1
        end
      end
      assert.is_true(replayed > 0)
    end)
  end)
end

describe("fuzz regressions", function()
  local function handshaken_pair()
    local server_ctx = assert(core.new_context { mode = "server", certificate = FIXTURES .. "server.pem",
                                                 key = FIXTURES .. "server.key" })
    local client_ctx = assert(core.new_context { mode = "client", verify = "none" })
    local a, b = core.new_bio_pair()
    return client_ctx:new_conn { bio = a }, server_ctx:new_conn { bio = b }
  end

  -- api target: conn:session() of a client that had sent its ClientHello
  -- returned a session with no cipher, whose export() raised
  -- "export: out of memory".
  it("conn:session() is nil until the handshake is done, and always exports after", function()
    local client, server = handshaken_pair()
    assert.is_nil(client:session())
    assert.equal("want_read", client:do_handshake())
    assert.is_nil(client:session())
    assert.equal("want_read", server:do_handshake())
    assert.is_nil(server:session())
    for _ = 1, 10 do
      client:do_handshake()
      server:do_handshake()
    end
    for _, conn in ipairs { client, server } do
      local session = assert(conn:session())
      assert.matches("^%-%-%-%-%-BEGIN SSL SESSION PARAMETERS", session:export())
      assert.is_truthy(core.import_session(session:export()))
    end
  end)

  -- api target: once a read had failed (the network end was closed), a write
  -- said "write: bad length" (OpenSSL complaining about the alert it could
  -- not send) and shutdown "shutdown while in init". OpenSSL forbids I/O
  -- after such a failure: the Conn repeats its failure instead.
  it("a failed connection repeats its failure on every later I/O call", function()
    local server_ctx = assert(core.new_context { mode = "server", certificate = FIXTURES .. "server.pem",
                                                 key = FIXTURES .. "server.key" })
    local client = assert(core.new_context { mode = "client", verify = "none" }):new_conn()
    local server = server_ctx:new_conn()
    for _ = 1, 10 do
      client:do_handshake()
      server:bio():write(client:bio():read() or "")
      server:do_handshake()
      client:bio():write(server:bio():read() or "")
    end
    assert.equal("done", client:do_handshake())
    client:bio():close() -- the transport is gone
    local first = { client:read() }
    assert.same({ nil, "read: unexpected eof: the network end of the BIO pair was closed", "eof" }, first)
    assert.same(first, { client:write("x") })
    assert.same(first, { client:write("") })
    assert.same(first, { client:read() })
    assert.same(first, { client:do_handshake() })
    assert.same(first, { client:shutdown() })
    assert.same(first, { client:key_update() })
  end)

  -- server target: an alert whose number OpenSSL does not know (63) gave
  -- "do_handshake: unknown TLS error" (OpenSSL has no text for it).
  it("an unknown alert number is named in the message", function()
    local conn = assert(core.new_context { mode = "client", verify = "none" }):new_conn()
    assert.equal("want_read", conn:do_handshake())
    assert(conn:bio():read())
    conn:bio():write("\21\3\3\0\2\2\63") -- a fatal alert record, description 63
    assert.same({ nil, "do_handshake: the peer sent TLS alert 63, which OpenSSL does not know", "protocol" },
                { conn:do_handshake() })
  end)
end)
