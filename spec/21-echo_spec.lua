-- The echo server of examples/echo_server.lua with 200 concurrent TLS
-- clients, all coroutines in this one process on real TCP sockets: every
-- client does a full handshake and echoes 64 KiB, and every byte is checked.
-- Then the same with the clients' bytes reaching the server's TLS engine one
-- byte at a time (20 KiB each there: more than a whole 16 KiB record, byte by
-- byte, in turn with 199 others).

local tls = require "lunatls"
local socket = require "socket"
local scheduler = require "lunatls.scheduler"
local trickle = require "helpers.trickle"

local echo = assert(loadfile("examples/echo_server.lua"))("--module")

local FIXTURES = "spec/fixtures/"
local CLIENTS = 200
local SIZE = 64 * 1024
local TRICKLED_SIZE = 20 * 1024
-- Under a sanitizer everything runs 3 to 30 times slower.
local SLOWDOWN = os.getenv("LUNATLS_SANITIZER") and 4 or 1

local server_ctx = assert(tls.new_context {
  mode = "server", certificate = FIXTURES .. "server.pem", key = FIXTURES .. "server.key",
})
local client_ctx = assert(tls.new_context { mode = "client", cafile = FIXTURES .. "ca.pem" })

-- 64 KiB of pseudo-random bytes (a fixed seed: failures reproduce).
local BASE = (function()
  local state, bytes = 12345, {}
  for i = 1, SIZE do
    state = (state * 1103515245 + 12345) % 2147483648
    bytes[i] = string.char(state >> 16 & 255)
  end
  return table.concat(bytes)
end)()

-- Each client's payload is different: a rotation of BASE starting with the
-- client's number, so bytes crossing between clients would show.
local function payload_for(i)
  local header = ("client %d|"):format(i)
  local k = (i * 997) % SIZE + 1
  local body = BASE:sub(k) .. BASE:sub(1, k - 1)
  return header .. body:sub(#header + 1)
end

-- One client: connect, send the payload from a child task while this one
-- reads the echo, compare, exchange close_notify.
local function client(sched, port, i, size, report)
  local stream, message, code = tls.connect("127.0.0.1", port, client_ctx, { timeout = 180 * SLOWDOWN })
  if not stream then return report(i, false, "connect: " .. message .. " " .. tostring(code)) end
  local payload = payload_for(i):sub(1, size)
  local sent
  sched:spawn(function() sent = stream:send(payload) end)
  local back, why = stream:receive(#payload)
  if back ~= payload then
    stream:close()
    return report(i, false, "echo differs: " .. tostring(why))
  end
  local ok, err = stream:shutdown(true)
  stream:close()
  if sent ~= #payload then return report(i, false, "send did not finish") end
  if not ok then return report(i, false, "shutdown: " .. tostring(err)) end
  report(i, true)
end

-- Runs the server and CLIENTS clients; returns the clients' and the server's
-- results and the seconds it took.
-- `server_transport` wraps each transport the server accepts. `slow`: the
-- server is fed one byte at a time, on purpose, so that one of its
-- operations (a 16 KiB record, byte by byte, in turn with 199 others) and
-- its handshakes may take longer than the defaults (30 s, 10 s) on a slow
-- machine: they get 3 minutes, and the run 5. Under a sanitizer every limit
-- is four times longer (the 64 KiB echo's 30 s per operation ran out once
-- under gcstress on a loaded machine). `size`: each client's payload.
local function run(server_transport, slow, size)
  local sched = scheduler.new()
  local listener = assert(socket.bind("127.0.0.1", 0, 1024))
  local _, port = listener:getsockname()
  local results, served, finished = {}, {}, 0
  sched:spawn(echo.serve, sched, listener, server_ctx, {
    transport = server_transport,
    timeout = (slow and 180 or 30) * SLOWDOWN, -- 30: echo_server's default
    handshake_timeout = slow and 180 * SLOWDOWN or nil,
    on_done = function(echoed, message, code)
      served[#served + 1] = echoed or (tostring(message) .. " " .. tostring(code))
    end,
  })
  local function report(i, ok, why)
    results[i] = ok or why
    finished = finished + 1
    if finished == CLIENTS then listener:close() end -- ends serve()
  end
  for i = 1, CLIENTS do
    sched:spawn(client, sched, tonumber(port), i, size, report)
  end
  local started = socket.gettime()
  local ok, err = sched:run((slow and 300 or 120) * SLOWDOWN)
  local seconds = socket.gettime() - started
  listener:close()
  assert(ok, "the run did not finish: " .. tostring(err))
  return results, served, seconds
end

local function check(results, served, size)
  local failures = {}
  for i = 1, CLIENTS do
    if results[i] ~= true then failures[#failures + 1] = i .. ": " .. tostring(results[i]) end
  end
  assert.same({}, failures)
  assert.equal(CLIENTS, #served)
  for _, echoed in ipairs(served) do
    assert.equal(size, echoed)
  end
end

describe("echo server with " .. CLIENTS .. " concurrent clients", function()
  it("echoes 64 KiB to every client, every byte checked", function()
    local results, served, seconds = run(nil, false, SIZE)
    check(results, served, SIZE)
    print(("\n  %d clients x 64 KiB: %.2f s"):format(CLIENTS, seconds))
  end)

  it("echoes every byte when the clients' bytes arrive one byte at a time", function()
    local transports = {}
    local results, served, seconds = run(function(transport)
      local slow = trickle.wrap(transport, 1)
      transports[#transports + 1] = slow
      return slow
    end, true, TRICKLED_SIZE)
    check(results, served, TRICKLED_SIZE)
    -- the server's TLS engine really was fed byte by byte: at least the
    -- payload and the handshake, one receive per byte
    assert.equal(CLIENTS, #transports)
    for _, slow in ipairs(transports) do
      assert.is_true(slow.receives > TRICKLED_SIZE)
    end
    print(("\n  %d clients x 20 KiB, one byte at a time: %.2f s"):format(CLIENTS, seconds))
  end)

  it("payloads differ between clients (so cross-talk would show)", function()
    assert.are_not.equal(payload_for(1), payload_for(2))
    assert.equal(SIZE, #payload_for(CLIENTS))
  end)
end)
