-- Asynchronous certificate selection in the coroutine layer: tls.accept /
-- tls.wrap with select_context = function(hello), which runs in the
-- connection's coroutine and may yield. Real TCP on 127.0.0.1, the bundled
-- scheduler.

local socket = require "socket"
local tls = require "lunatls"
local scheduler = require "lunatls.scheduler"
local pair = require "helpers.pair"

local F = pair.fixture

-- Under valgrind or gcstress handshakes take 30 times longer: the slow
-- lookup waits longer, and fewer others can finish meanwhile.
local SANITIZED = os.getenv("LUNATLS_SANITIZER") ~= nil
local SLOW_LOOKUP = SANITIZED and 5 or 1
local FINISHED_MEANWHILE = SANITIZED and 0 or 50
-- Both sides' handshake limit (default 10 s) must outlast the slow lookup
-- and, under a sanitizer, 100 handshakes queued on one CPU.
local HANDSHAKE_LIMIT = SANITIZED and 300 or 30

-- Three hosts, three certificates (told apart by their subjects).
local HOSTS = {
  ["a.test"] = { "server", "CN=localhost,O=lunatls tests" },
  ["b.test"] = { "wronghost", "CN=wrong.example,O=lunatls tests" },
  ["c.test"] = { "untrusted", "CN=localhost,O=lunatls tests" },
}

local function contexts()
  local list = {}
  for name, host in pairs(HOSTS) do list[name] = pair.server_context_with(host[1]) end
  return list
end

describe("select_context", function()
  it("100 concurrent connections pause, choose after a random sleep, and each client sees its host's certificate", function()
    local sched = scheduler.new()
    local listener = assert(socket.bind("127.0.0.1", 0, 256))
    local _, port = listener:getsockname()
    local pausing = assert(tls.new_context { mode = "server", client_hello = true })
    local by_name = contexts()
    local client_ctx = tls.new_context { mode = "client", verify = "none" }
    local names = { "a.test", "b.test", "c.test" }
    local CLIENTS = 100
    local seen, chosen, finished, paused, most_paused, finished_meanwhile = {}, 0, 0, 0, 0, 0
    math.randomseed(7)

    sched:spawn(function()
      local transports = require "lunatls.transport.socket"
      for _ = 1, CLIENTS do
        local client = assert(transports.accept(listener)) -- yields while it waits
        sched:spawn(function()
          local stream = assert(tls.wrap(client, pausing, {
            select_context = function(hello)
              local slow = chosen + paused == 0 -- the first one looks up for long
              paused = paused + 1
              most_paused = math.max(most_paused, paused)
              scheduler.sleep(slow and SLOW_LOOKUP or math.random() * 0.05) -- a lookup elsewhere
              paused = paused - 1
              if slow then finished_meanwhile = finished end
              chosen = chosen + 1
              return by_name[hello.server_name]
            end,
            timeout = HANDSHAKE_LIMIT,
            handshake_timeout = HANDSHAKE_LIMIT,
          }))
          local ok, err = stream:handshake()
          assert(ok, err)
          assert(stream:send("bye\n"))
          stream:close()
        end)
      end
      listener:close()
    end)
    for i = 1, CLIENTS do
      sched:spawn(function()
        local name = names[i % 3 + 1]
        local stream = assert(tls.connect("127.0.0.1", port, client_ctx, {
          server_name = name, timeout = HANDSHAKE_LIMIT, handshake_timeout = HANDSHAKE_LIMIT }))
        assert(stream:handshake())
        seen[i] = { name, stream:peer_certificate():subject() }
        stream:receive()
        stream:close()
        finished = finished + 1
      end)
    end
    assert(sched:run(SANITIZED and 600 or 60))
    assert.equal(CLIENTS, chosen)
    assert.equal(CLIENTS, finished)
    for i = 1, CLIENTS do
      assert.equal(HOSTS[seen[i][1]][2], seen[i][2], seen[i][1])
    end
    assert.is_true(most_paused > 1, most_paused) -- paused together, not one after the other
    assert.is_true(finished_meanwhile > FINISHED_MEANWHILE, finished_meanwhile) -- others finished meanwhile
  end)

  it("false refuses the client; nil keeps the first context; an error fails that stream only", function()
    local function attempt(choice, name)
      local sched = scheduler.new()
      local listener = assert(socket.bind("127.0.0.1", 0))
      local _, port = listener:getsockname()
      local server_result, client_result
      sched:spawn(function()
        local stream, message, code = tls.accept(listener, tls.new_context {
          mode = "server", client_hello = true, certificate = F"server.pem", key = F"server.key" },
          { select_context = choice, timeout = 10 })
        server_result = stream and { stream:handshake() } or { nil, message, code }
        if stream then stream:close() end
        listener:close()
      end)
      sched:spawn(function()
        local stream, message, code = tls.connect("127.0.0.1", port, pair.sni_client_context(),
          { server_name = name or "a.test", timeout = 10 })
        client_result = { stream and stream:peer_certificate():subject() or nil, message, code }
        if stream then stream:close() end
      end)
      sched:run(20)
      return server_result, client_result
    end
    local server, client = attempt(function() return false end)
    assert.is_nil(server[1])
    assert.equal("protocol", server[3])
    assert.matches("unrecognized name", client[2])
    server, client = attempt(function() return nil end)
    assert.is_true(server[1])
    assert.equal("CN=localhost,O=lunatls tests", client[1])
    server = attempt(function() error("tenant lookup failed") end)
    assert.is_nil(server[1])
    assert.equal("callback", server[3])
    assert.matches("select_context: .*tenant lookup failed", server[2])
    server = attempt(function() return "not a context" end)
    assert.equal("callback", server[3])
  end)

  it("must be a function", function()
    local a = require("lunatls.transport.memory").pipe()
    assert.matches("select_context", pair.error_of(function()
      tls.wrap(a, pair.server_context(), { select_context = 42 })
    end))
  end)
end)
