--- The benchmark must keep working: `make test` runs a smoke pass of it (a
-- few iterations of every workload, no callgrind) and checks that every
-- figure is there and sane. The full run is `make bench` (bench/README.md).

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

--- The number at the start of a cell such as "1234 hs/s" or "12.5 MiB/s".
local function number(cell)
  return tonumber(cell:match("^([%d.]+)"))
end

describe("bench smoke run", function()
  local ok, out

  setup(function()
    local built, build_out = run("make -s bench-harness")
    assert(built, "make bench-harness failed:\n" .. build_out)
    ok, out = run("lua5.4 bench/run.lua --smoke")
  end)

  it("completes", function()
    assert.is_true(ok, out)
    assert.matches("SMOKE RUN", out)
  end)

  it("prints a C figure, a lunatls figure and their ratio for every workload", function()
    for _, workload in ipairs { "handshake", "resume", "bulk16k", "bulk1k", "bulk64" } do
      local c, l, r = out:match("\n" .. workload .. "%s+([%d.]+ [%a/]+)%s+([%d.]+ [%a/]+)%s+([%d.]+)")
      assert.is_truthy(c, workload .. " row missing:\n" .. out)
      assert.is_true(number(c) > 0 and number(l) > 0, workload)
      -- a smoke run is noisy, but a binding 20 times slower or faster than
      -- the C harness means a broken measurement
      assert.is_true(tonumber(r) > 0.05 and tonumber(r) < 20, workload .. " ratio " .. r)
    end
  end)

  it("measures memory per idle connection, C and lunatls", function()
    local c, l = out:match("per conn%s+(%d+) B%s+(%d+) B")
    assert.is_truthy(c, out)
    -- C's connection owns two 17 KiB BIO-pair buffers; lunatls's rings exist
    -- only while they hold bytes (src/pair.c), so an idle one is an SSL and
    -- a few objects: both between 4 KiB and 1 MiB, C's above 34 KiB
    assert.is_true(tonumber(c) > 34 * 1024 and tonumber(c) < 1024 * 1024, "C bytes per connection " .. c)
    assert.is_true(tonumber(l) > 4 * 1024 and tonumber(l) < 1024 * 1024, "lunatls bytes per connection " .. l)
  end)

  it("measures each kind of idle end, and OpenSSL's own share of it (bare_*)", function()
    for _, kind in ipairs { "client end, BIO pair", "server end, BIO pair" } do
      local l, bare = out:match("\n" .. kind .. "%s+(%d+) B%s+%d+ B%s+(%d+) B")
      assert.is_truthy(l, kind .. " row missing:\n" .. out)
      -- an SSL with nothing else: more than 4 KiB, and less than lunatls's end, which holds it
      assert.is_true(tonumber(bare) > 4 * 1024 and tonumber(bare) < tonumber(l), kind .. ": " .. bare .. " of " .. l)
    end
  end)

  it("runs the loopback TCP comparison, peers included when installed", function()
    for _, workload in ipairs { "handshake", "bulk16k", "bulk1k", "bulk64" } do
      local row = out:match("\n(" .. workload .. " [^\n]*)", out:find("loopback TCP", 1, true))
      assert.is_truthy(row, workload .. " TCP row missing:\n" .. out)
      local lunatls = row:match("^%S+%s+([%d.]+)")
      assert.is_true(tonumber(lunatls) > 0, row)
      -- a peer shows a figure, or says it is not installed (its ratio is then n/a)
      if not row:find("not installed", 1, true) then assert.is_nil(row:find("n/a", 1, true), row) end
    end
  end)
end)
