--- A fault-injecting transport between a client and a server connection, for
-- spec/30-faults_spec.lua. Both connections use their own BIO pairs; every
-- byte either sends crosses this transport, which may deliver it one byte at
-- a time, in random-sized pieces, cut the conversation short, flip a bit,
-- or deliver a record twice. A run drives both handshakes to their end, then
-- (when both succeeded) exchanges data both ways and checks it, and reports
-- what each side ended with.
--
--     local faults = require "helpers.faults"
--     local r = faults.run { version = "tls1.3", fault = { kind = "flip", dir = "s2c", at = 100 } }
--     -- r.client.status ("done" or nil), r.client.code ("eof", "protocol", ...), r.hung
--
-- Directions: "c2s" (client to server) and "s2c". Offsets count from 1 in the
-- bytes one side sent during the handshake, in order.
-- @module helpers.faults

local tls = require "lunatls"

local M = {}

local F = "spec/fixtures/"
local MAX_STEPS = 400 -- a handshake needs a dozen; bytewise a few thousand (see steps_for)

local contexts = {}

--- Contexts per version, made once: the server asks for a client certificate
-- so that every message of a full handshake crosses the transport.
local function context_pair(version)
  if not contexts[version] then
    contexts[version] = {
      client = assert(tls.new_context { mode = "client", cafile = F .. "ca.pem", max_version = version,
                                        certificate = F .. "client.pem", key = F .. "client.key",
                                        alpn = { "h2" } }),
      server = assert(tls.new_context { mode = "server", certificate = F .. "server.pem",
                                        key = F .. "server.key", verify = "require",
                                        cafile = F .. "ca.pem", max_version = version,
                                        alpn = { "h2" } }),
    }
  end
  return contexts[version]
end

--- A small deterministic PRNG (piece sizes), so a failing case replays.
local function prng(seed)
  local state = seed or 1
  return function(n)
    state = (state * 1103515245 + 12345) % 2147483648
    return 1 + (state >> 8) % n
  end
end

--- The boundaries of the TLS records in `data`: a list of end offsets.
function M.record_ends(data)
  local ends, pos = {}, 1
  while pos + 4 <= #data do
    local len = data:byte(pos + 3) * 256 + data:byte(pos + 4)
    pos = pos + 5 + len
    ends[#ends + 1] = math.min(pos - 1, #data)
  end
  return ends
end

--- One direction of the transport: what the sender wrote (`raw`, the clean
-- transcript) and what waits to be delivered (`queue`, after the fault).
local function new_lane(fault, dir)
  return {
    dir = dir,
    raw = "",
    queue = "",
    fault = fault and fault.dir == dir and fault or nil,
  }
end

--- The fault, applied to `chunk` as it is taken from the sender: its first
-- byte is offset #lane.raw + 1 of the stream. A truncated lane drops
-- everything after the cut and ends the transport once what came before
-- it is delivered.
local function apply_fault(lane, chunk)
  local fault, first = lane.fault, #lane.raw + 1
  local last = first + #chunk - 1
  lane.raw = lane.raw .. chunk
  if not fault or lane.cut then return lane.cut and "" or chunk end
  if fault.kind == "truncate" and last >= fault.at then
    lane.cut = true
    return chunk:sub(1, fault.at - first + 1)
  elseif fault.kind == "flip" and fault.at >= first and fault.at <= last then
    local i = fault.at - first + 1
    return chunk:sub(1, i - 1) .. string.char(chunk:byte(i) ~ (1 << (fault.bit or 0))) .. chunk:sub(i + 1)
  elseif fault.kind == "duplicate" and not lane.duplicated then
    -- the first record that ends at or after `at`, once it is complete
    local start = 1
    for _, e in ipairs(M.record_ends(lane.raw)) do
      if e >= fault.at then
        if e >= first and e <= last and e - start + 1 >= 5 then
          lane.duplicated = true
          local i = e - first + 1
          return chunk:sub(1, i) .. lane.raw:sub(start, e) .. chunk:sub(i + 1)
        end
        break
      end
      start = e + 1
    end
  end
  return chunk
end

--- Takes what the sender's network end holds into the lane.
local function collect(lane, net)
  local data = net:read()
  if data then lane.queue = lane.queue .. apply_fault(lane, data) end
end

--- Delivers queued bytes into the receiver's network end, a piece at a time
-- when `piece` is given; what a full buffer does not take stays queued.
-- Returns the bytes delivered.
local function deliver(lane, net, piece)
  if lane.queue == "" then return 0 end
  local n = piece and math.min(#lane.queue, piece()) or #lane.queue
  local taken = net:write(lane.queue:sub(1, n))
  if not taken then -- the receiver's end is closed
    lane.queue = ""
    return 0
  end
  lane.queue = lane.queue:sub(taken + 1)
  return taken
end

--- Ends the transport: neither side will receive anything more.
local function end_transport(run)
  if run.ended then return end
  run.ended = true
  run.c2s.queue, run.s2c.queue = "", ""
  for _, side in ipairs { run.client, run.server } do side.net:shutdown_write() end
end

--- Moves bytes both ways once; returns how many moved.
local function pump(run)
  collect(run.c2s, run.client.net)
  collect(run.s2c, run.server.net)
  if run.ended then
    run.c2s.queue, run.s2c.queue = "", ""
    return 0
  end
  local moved = deliver(run.c2s, run.server.net, run.piece) + deliver(run.s2c, run.client.net, run.piece)
  for _, lane in ipairs { run.c2s, run.s2c } do
    if lane.cut and lane.queue == "" then end_transport(run) end
  end
  return moved
end

--- One do_handshake on a side still handshaking; records its result.
local function step(side)
  if side.finished then return end
  local status, message, code = side.conn:do_handshake()
  side.calls = side.calls + 1
  if status == "done" or status == nil then
    side.finished, side.status, side.message, side.code = true, status, message, code
  elseif status ~= "want_read" and status ~= "want_write" then
    error("do_handshake returned " .. tostring(status))
  end
end

--- Sends `data` from one side and reads it on the other through the
-- transport; returns what arrived, or nil, message, code (the read or write
-- that failed). A stalled transport is ended, as in the handshake.
local function exchange(run, from, to, data)
  local offset, parts, got = 1, {}, 0
  for _ = 1, 20000 do
    if offset <= #data then
      local n, status, code = from.conn:write(data:sub(offset))
      if n then
        offset = offset + n
      elseif status ~= "want_read" and status ~= "want_write" then
        return nil, status, code
      end
    end
    local moved = pump(run)
    while true do
      local chunk, status, code = to.conn:read()
      if chunk then
        parts[#parts + 1] = chunk
        got = got + #chunk
      elseif status == "want_read" or status == "want_write" then
        break
      else
        return nil, status, code
      end
    end
    if got >= #data then return table.concat(parts) end
    if moved == 0 then end_transport(run) end
  end
  return nil, "no result after 20000 rounds (a hang)", "hang"
end

--- How many steps a run may take before it counts as a hang.
local function steps_for(fault)
  if fault and (fault.kind == "bytewise" or fault.kind == "pieces") then return 20000 end
  return MAX_STEPS
end

--- Runs one handshake through a faulty transport. opts: `version`
-- ("tls1.2"/"tls1.3"), `fault` = {kind = "truncate"|"flip"|"duplicate"|
-- "bytewise"|"pieces", dir = "c2s"|"s2c", at = offset, bit = 0..7, seed}.
-- Returns {client = side, server = side, hung = bool, transcript = {c2s =, s2c =},
-- data = "ok" | nil, data_failure = {message, code}} where side = {status,
-- message, code, calls}.
function M.run(opts)
  local ctxs = context_pair(opts.version)
  local fault = opts.fault
  local random = prng(fault and fault.seed)
  if fault and not fault.dir then fault.dir = "c2s" end
  local run = {
    client = { conn = ctxs.client:new_conn { server_name = "localhost" }, calls = 0 },
    server = { conn = ctxs.server:new_conn(), calls = 0 },
  }
  run.client.net, run.server.net = run.client.conn:bio(), run.server.conn:bio()
  run.c2s, run.s2c = new_lane(fault, "c2s"), new_lane(fault, "s2c")
  if fault and fault.kind == "bytewise" then run.piece = function() return 1 end end
  if fault and fault.kind == "pieces" then run.piece = function() return random(300) end end

  local hung = true
  for _ = 1, steps_for(fault) do
    step(run.client)
    local moved = pump(run)
    step(run.server)
    moved = moved + pump(run)
    if run.client.finished and run.server.finished then
      hung = false
      break
    end
    -- nothing moves: the conversation has stalled (a side finished or
    -- failed, or a corrupt length makes one wait for bytes that will never
    -- come). A real transport would time out: end it, and then every side
    -- still handshaking must give its result at once.
    if moved == 0 then end_transport(run) end
  end
  local result = {
    client = run.client, server = run.server, hung = hung,
    transcript = { c2s = run.c2s.raw, s2c = run.s2c.raw },
  }
  if not hung and run.client.status == "done" and run.server.status == "done" then
    local up, m1, c1 = exchange(run, run.client, run.server, "ping from the client")
    local down, m2, c2 = exchange(run, run.server, run.client, "pong from the server")
    if up == "ping from the client" and down == "pong from the server" then
      result.data = "ok"
    else
      result.data_failure = { up and m2 or m1, up and c2 or c1, up = up, down = down }
    end
  end
  run.client.conn:close()
  run.server.conn:close()
  return result
end

--- The clean transcript of a full handshake in `version`: {c2s =, s2c =}.
function M.transcript(version)
  return M.run { version = version }.transcript
end

return M
