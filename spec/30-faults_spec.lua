-- Fault injection: full TLS 1.2 and TLS 1.3 handshakes (client certificate
-- included) through a transport that delivers one byte at a time, in
-- random-sized pieces, cut short at every offset, with a bit flipped at
-- every offset, or with a record delivered twice (spec/helpers/faults.lua).
-- Every case must end with a documented result on both sides: "done", or
-- nil, "do_handshake: <reason>", code with the right code; never a hang,
-- never a crash, and never data that differs from what was sent.
--
-- LUNATLS_FAULT_STRIDE=n tries every n-th offset only. The default is every
-- offset; under `make valgrind` every 61st (a full sweep is ~16,000
-- handshakes: half a minute natively, hours under memcheck), under
-- `make asan` and `make gcstress` every 3rd.

local faults = require "helpers.faults"

package.path = "./fuzz/?.lua;" .. package.path
local check = require "check"

local DEFAULT_STRIDE = { valgrind = 61, asan = 3, gcstress = 3 }
local STRIDE = tonumber(os.getenv("LUNATLS_FAULT_STRIDE"))
  or DEFAULT_STRIDE[os.getenv("LUNATLS_SANITIZER") or ""] or 1

-- The codes each fault may end a handshake with (besides "done"). A cut
-- stream is a prefix of a good one: only "eof". A flipped bit or a replayed
-- record is corruption: "protocol", or "verify" when it lands in a
-- certificate or its signature, or "eof" when the side that noticed gave up
-- without an alert the other could read.
local HANDSHAKE_CODES = {
  truncate = { eof = true },
  flip = { protocol = true, verify = true, eof = true },
  duplicate = { protocol = true, verify = true, eof = true },
}
-- After two "done"s, the data exchange that follows may still meet the fault
-- (a TLS 1.3 ticket, a replayed Finished): it then fails with these.
local DATA_CODES = {
  truncate = { eof = true },
  flip = { protocol = true, eof = true },
  duplicate = { protocol = true, eof = true },
}

--- What is wrong with one run's result, or nil.
local function judge(kind, r)
  if r.hung then return "hung" end
  for _, name in ipairs { "client", "server" } do
    local side = r[name]
    if side.status ~= "done" then
      local ok, err = pcall(check.first_status, "do_handshake", side.status, side.message, side.code, 3)
      if not ok then return name .. ": " .. tostring(err) end
      if not HANDSHAKE_CODES[kind][side.code] then
        return ("%s: code %s (%s)"):format(name, tostring(side.code), tostring(side.message))
      end
    end
  end
  if r.client.status == "done" and r.server.status == "done" and r.data ~= "ok" then
    local failure = r.data_failure
    if not DATA_CODES[kind][failure[2]] then
      return ("data after the handshake: %s (%s)"):format(tostring(failure[2]), tostring(failure[1]))
    end
  end
  return nil
end

--- One word for a run's outcome: "done/eof", "protocol/done+data"...
local function outcome(r)
  local function word(side) return side.status or side.code end
  return word(r.client) .. "/" .. word(r.server) .. (r.data == "ok" and "+data" or "")
end

--- Runs `kind` at every STRIDE-th offset of one direction; fails listing the
-- offsets whose result is wrong.
local function sweep(version, kind, dir, length, extra)
  local problems, tally, runs = {}, {}, 0
  for at = 1, length, STRIDE do
    local fault = { kind = kind, dir = dir, at = at }
    for k, v in pairs(extra or {}) do fault[k] = v end
    local r = faults.run { version = version, fault = fault }
    runs = runs + 1
    local word = outcome(r)
    tally[word] = (tally[word] or 0) + 1
    local problem = judge(kind, r)
    if problem and #problems < 20 then problems[#problems + 1] = ("at %d: %s"):format(at, problem) end
  end
  assert(runs > 0)
  assert.same({}, problems)
  return tally
end

for _, version in ipairs { "tls1.2", "tls1.3" } do
  describe("a " .. version .. " handshake through a faulty transport", function()
    local transcript = faults.transcript(version)

    it("is a full handshake: a client certificate, several records each way", function()
      assert.is_true(#faults.record_ends(transcript.c2s) >= 3)
      assert.is_true(#faults.record_ends(transcript.s2c) >= 3)
      assert.is_true(#transcript.s2c > 1000) -- certificates
    end)

    it("completes when every byte arrives on its own", function()
      local r = faults.run { version = version, fault = { kind = "bytewise" } }
      assert.is_false(r.hung)
      assert.same({ "done", "done", "ok" }, { r.client.status, r.server.status, r.data })
      assert.is_true(r.client.calls > 100) -- it really went byte by byte
    end)

    it("completes when bytes arrive in random-sized pieces (20 seeds)", function()
      for seed = 1, 20 do
        local r = faults.run { version = version, fault = { kind = "pieces", seed = seed } }
        assert.is_false(r.hung, "seed " .. seed)
        assert.same({ "done", "done", "ok" }, { r.client.status, r.server.status, r.data }, "seed " .. seed)
      end
    end)

    for _, dir in ipairs { "c2s", "s2c" } do
      local what = dir == "c2s" and "client's" or "server's"

      it(("ends with done or eof when the %s bytes are cut at every offset"):format(what), function()
        local tally = sweep(version, "truncate", dir, #transcript[dir])
        -- a cut anywhere before the end leaves someone without its bytes
        assert.is_true((tally["eof/eof"] or 0) > 0)
      end)

      it(("ends with a documented result when a bit of the %s bytes flips at every offset"):format(what),
         function()
        local tally = sweep(version, "flip", dir, #transcript[dir], { bit = 0 })
        local runs, unnoticed = 0, 0
        for word, n in pairs(tally) do
          runs = runs + n
          if word:find("+data", 1, true) then unnoticed = unnoticed + n end
        end
        -- nearly every flip is noticed, in the handshake or by the first read
        -- after it (a few land in bytes TLS ignores, such as a record's legacy
        -- version: then the data must arrive intact, which judge checked)
        assert.is_true(unnoticed <= runs / 20, ("%d of %d flips unnoticed"):format(unnoticed, runs))
      end)

      it(("ends with a documented result when a record of the %s bytes arrives twice"):format(what),
         function()
        -- one run per record: `at` is the first byte of each record
        local starts, first = {}, 1
        for _, last in ipairs(faults.record_ends(transcript[dir])) do
          starts[#starts + 1] = first
          first = last + 1
        end
        local problems = {}
        for _, at in ipairs(starts) do
          local r = faults.run { version = version, fault = { kind = "duplicate", dir = dir, at = at } }
          local problem = judge("duplicate", r)
          if problem then problems[#problems + 1] = ("record at %d: %s"):format(at, problem) end
        end
        assert.same({}, problems)
      end)
    end
  end)
end
