--- make test runs the robustness harnesses briefly, so they cannot rot:
-- `make oom` (every allocation of every call that reaches OpenSSL failed in
-- turn, under ASan and LeakSanitizer) and `make fuzz-smoke` (each libFuzzer
-- target over its stored corpus and regressions, then a few seconds of new
-- inputs). Both build their own instrumented binaries, so this spec skips
-- itself inside `make asan`/`valgrind`/`gcstress` (LUNATLS_SANITIZER set):
-- there it would only rebuild and rerun the same thing, outside the tool.

local sanitizer = os.getenv("LUNATLS_SANITIZER")

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

local describe_unless_sanitized = sanitizer and pending or describe

describe_unless_sanitized("robustness harnesses (skipped under LUNATLS_SANITIZER)", function()
  it("make oom: every allocation failure raises 'not enough memory', leaks nothing", function()
    local ok, out = run("make -s oom")
    assert.is_true(ok, out)
    local injected = tonumber(out:match("oom: (%d+) allocation failures injected"))
    assert.is_truthy(injected, out)
    assert.is_true(injected > 300, out) -- the harness really reached the calls
    assert.is_nil(out:find("ERROR: AddressSanitizer", 1, true), out)
    assert.is_nil(out:find("LeakSanitizer", 1, true), out)
  end)

  it("make fuzz-smoke: each target replays its corpus and fuzzes a few seconds without a crash", function()
    local ok, out = run("make -s fuzz-smoke FUZZ_SMOKE_TIME=4")
    assert.is_true(ok, out)
    local runs = 0
    for executed in out:gmatch("stat::number_of_executed_units: (%d+)") do
      assert.is_true(tonumber(executed) > 0, out)
      runs = runs + 1
    end
    assert.equal(3, runs, out) -- client, server, api
  end)
end)
