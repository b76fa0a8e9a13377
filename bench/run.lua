--- Runs lunatls's benchmark and prints the tables bench/README.md quotes.
-- Every figure comes from a separate process; C and Lua runs of the same
-- workload alternate (C first in odd rounds, lunatls first in even ones), and
-- the tables show medians. Then, unless --no-callgrind, each workload runs
-- under callgrind at two sizes and the difference gives instructions per
-- operation (set-up and start-up cancel out), a figure the machine's noise
-- does not move.
--
--   lua5.4 bench/run.lua [--smoke] [--rounds=N] [--scale=F] [--no-callgrind]
--                        [--callgrind] [--no-peers] [--no-memory] [--only=w1,w2]
--
-- --smoke: one round of a few iterations, no callgrind (what `make test`
-- runs so that the benchmark cannot rot); --callgrind adds it back.
-- --rounds=0: the callgrind table alone. LUNATLS_BUILD=dir runs lunatls from
-- another build (e.g. an older commit's) to compare.
--
-- Run from the repository root after `make` and `make bench-harness`
-- (`make bench` does all of it). Exits non-zero when a run fails; the
-- acceptance targets are reported, not enforced.

local HARNESS = "build/bench/harness"
local LUA = os.getenv("LUA") or "lua5.4"
local TUNABLES = "glibc.cpu.x86_rep_movsb_threshold=2147483647:" ..
                 "glibc.cpu.x86_rep_stosb_threshold=2147483647"

-- name, iterations (full, smoke), unit, target ratio lunatls/C (issue 11's
-- for the core), c: the harness's workload when its name differs. The zc_*
-- workloads are the same ones without Lua strings (bio:move_to,
-- conn:read_into into one Buffer), against the same C runs.
local WORKLOADS = {
  { name = "handshake", full = 400, smoke = 3, unit = "hs/s", target = 0.99 },
  { name = "resume", full = 800, smoke = 3, unit = "hs/s" },
  { name = "bulk16k", full = 20000, smoke = 20, unit = "MiB/s", target = 0.97 },
  { name = "bulk1k", full = 120000, smoke = 50, unit = "MiB/s", target = 0.95 },
  { name = "bulk64", full = 200000, smoke = 50, unit = "MiB/s" },
  { name = "msg1k", full = 100000, smoke = 50, unit = "msg/s", target = 0.85 },
  { name = "zc_bulk16k", c = "bulk16k", full = 20000, smoke = 20, unit = "MiB/s", target = 0.97 },
  { name = "zc_bulk1k", c = "bulk1k", full = 120000, smoke = 50, unit = "MiB/s", target = 0.95 },
  { name = "zc_bulk64", c = "bulk64", full = 200000, smoke = 50, unit = "MiB/s" },
  { name = "zc_msg1k", c = "msg1k", full = 100000, smoke = 50, unit = "msg/s", target = 0.85 },
}

-- Over loopback TCP: lunatls's core two ways (its BIO pair with LuaSocket
-- moving the bytes; the socket given as fd), its stream layer the same two
-- ways (the socket and the fd transport: what tls.connect gives), LuaSec,
-- cqueues. `peer`: one of the two the others are divided by.
local PEER_IMPLS = {
  { impl = "lunatls", prefix = "sock_", label = "core: BIO pair" },
  { impl = "lunatls", prefix = "tcp_", label = "core: fd" },
  { impl = "lunatls", prefix = "stream_sock_", label = "stream: socket" },
  { impl = "lunatls", prefix = "stream_tcp_", label = "stream: fd" },
  { impl = "c", prefix = "tcp_", label = "C: fd" },
  { impl = "luasec", prefix = "", label = "LuaSec", peer = true },
  { impl = "cqueues", prefix = "", label = "cqueues", peer = true },
}
local PEER_WORKLOADS = {
  { name = "handshake", full = 300, smoke = 3, unit = "hs/s" },
  { name = "bulk16k", full = 10000, smoke = 20, unit = "MiB/s" },
  { name = "bulk1k", full = 40000, smoke = 50, unit = "MiB/s" },
  { name = "bulk64", full = 40000, smoke = 50, unit = "MiB/s" },
  { name = "msg1k", full = 40000, smoke = 50, unit = "msg/s" },
}

-- The stream layer (bench/lunatls_bench.lua's stream_*: tls.wrap in a
-- scheduler task) over a memory pipe, and over loopback TCP with the socket
-- and the fd transport, against the C harness doing the same OpenSSL work
-- over the same transport (its in-process, sock_* and tcp_* workloads):
-- callgrind only (issue 11's targets, lunatls/C).
local STREAM_TARGETS = { handshake = 0.97, bulk16k = 0.90, bulk1k = 0.80, bulk64 = 0.70, msg1k = 0.70 }
local STREAM_WORKLOADS = {}
for _, over in ipairs { { "stream_", "" }, { "stream_sock_", "sock_" }, { "stream_tcp_", "tcp_" } } do
  for _, w in ipairs { "handshake", "bulk16k", "bulk1k", "bulk64", "msg1k" } do
    STREAM_WORKLOADS[#STREAM_WORKLOADS + 1] = { name = over[1] .. w, c = over[2] .. w, target = STREAM_TARGETS[w] }
  end
end

-- One end of each kind kept idle (lunatls_bench.lua memory_client, ...):
-- issue 11's target, at most 20 KB each. `bare`: the C harness's end of the
-- same kind with no BIO at all, what OpenSSL alone holds (the floor).
local MEMORY_ENDS = {
  { name = "memory_client", label = "client end, BIO pair", bare = "bare_client" },
  { name = "memory_server", label = "server end, BIO pair", bare = "bare_server" },
  { name = "tcp_memory_client", label = "client end, TCP fd", bare = "bare_client" },
  { name = "tcp_memory_server", label = "server end, TCP fd", bare = "bare_server" },
  { name = "adopted_memory_client", label = "client end, TCP fd, adopted", bare = "bare_client" },
  { name = "adopted_memory_server", label = "server end, TCP fd, adopted", bare = "bare_server" },
}
local MEMORY_END_TARGET = 20000

-- Iterations at the two callgrind sizes (difference / (big - small) = per op).
local CALLGRIND = {
  handshake = { 5, 45 }, -- 40 pairs: the per-pair noise of a run (its hash seed) spread thinner
  resume = { 5, 45 },
  bulk16k = { 200, 2200 },
  bulk1k = { 1000, 21000 },
  bulk64 = { 2000, 42000 },
  msg1k = { 1000, 11000 },
  zc_bulk16k = { 200, 2200 },
  zc_bulk1k = { 1000, 21000 },
  zc_bulk64 = { 2000, 42000 },
  zc_msg1k = { 1000, 11000 },
}
-- the stream's and the harness's TCP runs: the sizes of their in-process kin
for _, prefix in ipairs { "stream_", "stream_sock_", "stream_tcp_", "sock_", "tcp_" } do
  for _, w in ipairs { "handshake", "bulk16k", "bulk1k", "bulk64", "msg1k" } do
    CALLGRIND[prefix .. w] = CALLGRIND[w]
  end
end

local function parse_options(argv)
  local opts = { rounds = 11, scale = 1, peers = true, memory = true }
  local callgrind
  for _, a in ipairs(argv) do
    local key, value = a:match("^%-%-([%w-]+)=?(.*)$")
    if key == "smoke" then
      opts.smoke, opts.rounds = true, 1
    elseif key == "callgrind" then
      callgrind = true
    elseif key == "rounds" then
      opts.rounds = assert(math.tointeger(tonumber(value)), "--rounds=N (0: callgrind only)")
    elseif key == "scale" then
      opts.scale = assert(tonumber(value), "--scale=F")
    elseif key == "no-callgrind" then
      callgrind = false
    elseif key == "no-peers" then
      opts.peers = false
    elseif key == "no-memory" then
      opts.memory = false
    elseif key == "only" then
      opts.only = {}
      for w in value:gmatch("[^,]+") do opts.only[w] = true end
    else
      io.stderr:write("run.lua: unknown option " .. a .. "\n")
      os.exit(2)
    end
  end
  if callgrind == nil then callgrind = not opts.smoke end
  opts.callgrind = callgrind
  if opts.rounds == 0 then opts.peers, opts.memory = false, false end
  return opts
end

local opts = parse_options(arg)

local function selected(name)
  return not opts.only or opts.only[name]
end

local function iterations(w)
  if opts.smoke then return w.smoke end
  return math.max(1, math.floor(w.full * opts.scale + 0.5))
end

--- Runs a command; returns its output, raising when it fails.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  if not ok then error(string.format("command failed (%s): %s\n%s", tostring(code), cmd, out)) end
  return out
end

--- The RESULT line's fields, or nil, "skip" for a SKIP line.
local function result_of(out, cmd)
  local line = out:match("RESULT ([^\n]*)")
  if not line then
    if out:match("SKIP ") then return nil, "skip" end
    error("no RESULT from: " .. cmd .. "\n" .. out)
  end
  local fields = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do fields[k] = tonumber(v) or v end
  return fields
end

local function command(impl, workload, n)
  if impl == "c" then return string.format("%s %s %d", HARNESS, workload, n) end
  return string.format("%s bench/%s_bench.lua %s %d", LUA, impl, workload, n)
end

local function measure(impl, workload, n)
  local cmd = command(impl, workload, n)
  return result_of(run(cmd), cmd)
end

local function median(list)
  if #list == 0 then return nil end
  local sorted = { table.unpack(list) }
  table.sort(sorted)
  local mid = (#sorted + 1) // 2
  if #sorted % 2 == 1 then return sorted[mid] end
  return (sorted[mid] + sorted[mid + 1]) / 2
end

local function fmt(x, unit)
  if x == nil then return "n/a" end
  if unit == "B" then return string.format("%.0f B", x) end
  if x >= 100 then return string.format("%.0f %s", x, unit) end
  return string.format("%.1f %s", x, unit)
end

local function ratio(a, b)
  if a == nil or b == nil or b == 0 then return nil end
  return a / b
end

local function verdict(r, target, at_most)
  if not target or not r then return "" end
  if opts.smoke then return string.format("(target %s %.2f)", at_most and "<=" or ">=", target) end
  local ok = (at_most and r <= target) or (not at_most and r >= target)
  return string.format("%s %.2f %s", at_most and "<=" or ">=", target, ok and "ok" or "BELOW TARGET")
end

local function shell(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local out = p and p:read("a") or ""
  if p then p:close() end
  return (out:gsub("%s+$", ""))
end

local function machine()
  local cpu = shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"):gsub("^%s+", "")
  return string.format("%s; %s cores; %s; kernel %s; %s; %s",
    cpu, shell("nproc"), shell("grep -m1 MemTotal /proc/meminfo | awk '{printf \"%.0f GiB RAM\", $2/1048576}'"),
    shell("uname -r"), shell("openssl version"), shell(LUA .. " -v"))
end

-- ---- the timed runs ----

local samples = {} -- samples[impl][workload] = { rate, ... }

local function add(impl, workload, value)
  samples[impl] = samples[impl] or {}
  samples[impl][workload] = samples[impl][workload] or {}
  table.insert(samples[impl][workload], value)
end

local function sample(impl, key, workload, n, field)
  local r, skip = measure(impl, workload, n)
  if r then add(impl, key, r[field or "rate"]) end
  return r, skip
end

local skipped = {}

local function timed_rounds()
  for round = 1, opts.rounds do
    io.stderr:write(string.format("round %d/%d\n", round, opts.rounds))
    local order = round % 2 == 1 and { "c", "lunatls" } or { "lunatls", "c" }
    for _, w in ipairs(WORKLOADS) do
      if selected(w.name) then
        for _, impl in ipairs(order) do
          sample(impl, w.name, impl == "c" and w.c or w.name, iterations(w))
        end
      end
    end
    if opts.smoke then -- the stream workloads are measured by callgrind only: run them once,
      -- with the harness's TCP runs they are measured against
      for _, w in ipairs(STREAM_WORKLOADS) do
        if selected(w.name) then
          measure("lunatls", w.name, 3)
          if w.c:match("^sock_") or w.c:match("^tcp_") then measure("c", w.c, 3) end
        end
      end
    end
    if opts.peers then
      local first, last, step = 1, #PEER_IMPLS, 1
      if round % 2 == 0 then first, last, step = last, first, -1 end
      for _, w in ipairs(PEER_WORKLOADS) do
        if selected(w.name) then
          for i = first, last, step do
            local p = PEER_IMPLS[i]
            local _, skip = sample(p.impl, "peer_" .. p.label .. w.name, p.prefix .. w.name,
              iterations(w))
            if skip then skipped[p.label] = true end
          end
        end
      end
    end
  end
end

local function memory_rounds()
  local n = opts.smoke and 200 or 10000
  local rounds = opts.smoke and 1 or math.min(opts.rounds, 3)
  for round = 1, rounds do
    io.stderr:write(string.format("memory %d/%d (%d connections)\n", round, rounds, n))
    local order = round % 2 == 1 and { "c", "lunatls" } or { "lunatls", "c" }
    for _, impl in ipairs(order) do
      local r = measure(impl, "memory", n)
      add(impl, "memory_rss", r.rss_per_conn)
      if r.lua_per_conn then add(impl, "memory_lua", r.lua_per_conn) end
      if r.heap_per_conn then add(impl, "memory_heap", r.heap_per_conn) end
    end
    local floors = {} -- each bare_* once a round
    for _, w in ipairs(MEMORY_ENDS) do
      local r = measure("lunatls", w.name, n)
      add("lunatls", w.name, r.rss_per_conn)
      add("lunatls", w.name .. "_lua", r.lua_per_conn)
      if not floors[w.bare] then
        floors[w.bare] = true
        add("c", w.bare, measure("c", w.bare, n).rss_per_conn)
      end
    end
  end
  return n
end

local function med(impl, key)
  return samples[impl] and samples[impl][key] and median(samples[impl][key])
end

--- The highest rate of all rounds.
local function best(impl, key)
  local xs = samples[impl] and samples[impl][key]
  return xs and #xs > 0 and math.max(table.unpack(xs)) or nil
end

--- The median of the per-round ratios a/b: runs next to each other share
-- whatever load the machine had then, so their ratio is steadier than the
-- ratio of the two medians.
local function paired(a, b, key)
  local xs, ys, ratios = samples[a] and samples[a][key], samples[b] and samples[b][key], {}
  if not xs or not ys then return nil end
  for i = 1, math.min(#xs, #ys) do ratios[i] = xs[i] / ys[i] end
  return median(ratios)
end

-- ---- callgrind ----

local function instructions(impl, workload, n)
  local cmd = string.format("GLIBC_TUNABLES=%s valgrind --tool=callgrind --callgrind-out-file=/dev/null %s",
    TUNABLES, command(impl, workload, n))
  local out = run(cmd)
  local collected = out:match("Collected%s*:%s*(%d+)")
  if not collected then error("no callgrind total from: " .. cmd .. "\n" .. out) end
  return tonumber(collected)
end

local function per_op(impl, workload)
  local sizes = CALLGRIND[workload]
  local small, big = sizes[1], sizes[2]
  if opts.smoke then small, big = 1, 3 end
  local a = instructions(impl, workload, small)
  local b = instructions(impl, workload, big)
  return (b - a) / (big - small)
end

--- The harness's instructions per operation of `workload`, measured once.
local c_runs = {}
local function c_per_op(workload)
  c_runs[workload] = c_runs[workload] or per_op("c", workload)
  return c_runs[workload]
end

-- ---- report ----

--- A callgrind table of workloads measured against the C harness's runs
-- of w.c: title lines, the column's label, the workloads.
local function print_layer_table(irs, titles, label, workloads)
  print()
  for _, line in ipairs(titles) do print(line) end
  print(string.format("%-17s %14s %14s %10s  %s", "workload", "C Ir/op", label .. " Ir/op",
    "C/" .. label, "target"))
  for _, w in ipairs(workloads) do
    local ir = irs[w.name]
    if ir then
      local r = ratio(ir.c, ir.lunatls)
      print(string.format("%-17s %14.0f %14.0f %10.3f  %s", w.name, ir.c, ir.lunatls, r, verdict(r, w.target)))
    end
  end
end

local function print_tables(memory_n, irs)
  local nrounds = opts.rounds
  print(string.format("lunatls benchmark (%s)", os.date("!%Y-%m-%d %H:%M UTC")))
  print("machine: " .. machine())
  print(string.format("medians of %d interleaved run(s) each, process CPU time%s", nrounds,
    opts.smoke and " (SMOKE RUN: a few iterations, figures are not meaningful)" or ""))
  print()
  if nrounds == 0 then goto callgrind end
  print("BIO pairs in one process, the same OpenSSL calls: C harness vs lunatls")
  print("(lunatls/C: median of the per-round ratios; then the ratio of the medians, and of")
  print("the best runs, the least disturbed by other load)")
  print(string.format("%-10s %14s %14s %10s %8s %8s  %s", "workload", "C", "lunatls", "lunatls/C",
    "medians", "best", "target"))
  for _, w in ipairs(WORKLOADS) do
    if selected(w.name) then
      local c, l = med("c", w.name), med("lunatls", w.name)
      local r, rm = paired("lunatls", "c", w.name), ratio(l, c)
      local rb = ratio(best("lunatls", w.name), best("c", w.name))
      local function f(x) return x and string.format("%.3f", x) or "n/a" end
      print(string.format("%-10s %14s %14s %10s %8s %8s  %s", w.name, fmt(c, w.unit), fmt(l, w.unit),
        f(r), f(rm), f(rb), verdict(r, w.target)))
    end
  end
  if memory_n then
    print()
    print(string.format("memory per idle established connection (%d open, RSS growth / connections)", memory_n))
    local c, l = med("c", "memory_rss"), med("lunatls", "memory_rss")
    local r = ratio(l, c)
    print(string.format("%-10s %14s %14s %10s %8s %8s  %s", "per conn", fmt(c, "B"), fmt(l, "B"),
      r and string.format("%.3f", r) or "n/a", "", "", verdict(r, 1.2, true)))
    print(string.format("  (C heap in use per conn: %s; of lunatls's, Lua objects: %s)",
      fmt(med("c", "memory_heap"), "B"), fmt(med("lunatls", "memory_lua"), "B")))
    print()
    print("lunatls, one end of each kind kept idle (RSS growth / ends; of it, the Lua heap;")
    print("over TCP the Lua heap is mostly LuaSocket's socket object and its 8 KiB buffer),")
    print("and OpenSSL alone: the C harness's end of the kind with its BIOs freed (bare_*)")
    print(string.format("%-28s %10s %10s %14s", "", "lunatls", "Lua heap", "OpenSSL alone"))
    for _, w in ipairs(MEMORY_ENDS) do
      local rss = med("lunatls", w.name)
      print(string.format("%-28s %10s %10s %14s  %s", w.label, fmt(rss, "B"),
        fmt(med("lunatls", w.name .. "_lua"), "B"), fmt(med("c", w.bare), "B"),
        rss and (opts.smoke and "" or (rss <= MEMORY_END_TARGET and "<= 20 KB ok" or "<= 20 KB ABOVE TARGET")) or ""))
    end
  end
  if opts.peers then
    print()
    print("lunatls against LuaSec and cqueues over the same loopback TCP, one process each")
    print("(lunatls's first column: in process on BIO pairs, the first table). lunatls's core over")
    print("TCP two ways (its BIO pair with LuaSocket moving the bytes; fd = socket), and its stream")
    print("layer (tls.wrap in a scheduler task) over the socket and the fd transport.")
    local head = string.format("%-10s %14s", "workload", "in process")
    for _, p in ipairs(PEER_IMPLS) do head = head .. string.format(" %14s", p.label) end
    print(head)
    local lines = {}
    for _, w in ipairs(PEER_WORKLOADS) do
      if selected(w.name) then
        local line = string.format("%-10s %14s", w.name, fmt(med("lunatls", w.name), w.unit))
        local rates, best = {}, 0
        for i, p in ipairs(PEER_IMPLS) do
          rates[i] = med(p.impl, "peer_" .. p.label .. w.name)
          line = line .. string.format(" %14s", skipped[p.label] and "not installed" or fmt(rates[i], w.unit))
          if p.peer then best = math.max(best, rates[i] or 0) end
        end
        print(line)
        local ratios = string.format("%-10s %14s", w.name, "")
        for i, p in ipairs(PEER_IMPLS) do
          local r = not p.peer and ratio(rates[i], best)
          ratios = ratios .. string.format(" %14s", r and string.format("%.2fx", r) or "")
        end
        lines[#lines + 1] = ratios
      end
    end
    print("lunatls, each way, divided by the faster of LuaSec and cqueues:")
    for _, line in ipairs(lines) do print(line) end
  end
  ::callgrind::
  if irs then
    print()
    print("callgrind: instructions per operation (GLIBC_TUNABLES=" .. TUNABLES .. ")")
    print(string.format("%-10s %14s %14s %10s  %s", "workload", "C Ir/op", "lunatls Ir/op", "C/lunatls", "target"))
    for _, w in ipairs(WORKLOADS) do
      local ir = irs[w.name]
      if ir then
        local r = ratio(ir.c, ir.lunatls)
        print(string.format("%-10s %14.0f %14.0f %10.3f  %s", w.name, ir.c, ir.lunatls, r,
          verdict(r, w.target)))
      end
    end
    print_layer_table(irs, {
      "callgrind, the stream layer: tls.wrap over a memory pipe (stream_*), over loopback TCP with",
      "the socket transport (stream_sock_*) and the fd transport (stream_tcp_*), against the C harness",
      "doing the same over the same transport (in process, sock_*, tcp_*), instructions per operation" },
      "stream", STREAM_WORKLOADS)
  end
end

--- The peers' bulk throughput by write size, for bench/throughput.gp:
-- one row per size, one column per way (the in-process C and lunatls
-- first). Returns the file's name, or nil when no peer ran.
local PLOT_DATA = "build/bench/throughput.dat"
local function write_plot_data()
  if not opts.peers or opts.smoke then return nil end
  local columns = { { "C, in process", "c", "" }, { "lunatls core, in process", "lunatls", "" } }
  for _, p in ipairs(PEER_IMPLS) do
    if not skipped[p.label] then columns[#columns + 1] = { p.label .. " (TCP)", p.impl, "peer_" .. p.label } end
  end
  local f = assert(io.open(PLOT_DATA, "w"))
  local head = { "size" }
  for _, c in ipairs(columns) do head[#head + 1] = string.format("%q", c[1]) end
  f:write(table.concat(head, " "), "\n")
  for _, w in ipairs { { "bulk64", 64 }, { "bulk1k", 1024 }, { "bulk16k", 16384 } } do
    local row = { tostring(w[2]) }
    for _, c in ipairs(columns) do row[#row + 1] = string.format("%.2f", med(c[2], c[3] .. w[1]) or 0 / 0) end
    f:write(table.concat(row, " "), "\n")
  end
  f:close()
  return PLOT_DATA
end

--- bench/throughput.png from the run's numbers, with gnuplot (make bench
-- installs it); a note when it cannot.
local function plot()
  local data = write_plot_data()
  if not data then return end
  local ok = os.execute("gnuplot -e \"data='" .. data .. "'; out='bench/throughput.png'\" bench/throughput.gp")
  print()
  print(ok and "plot: bench/throughput.png (bench/throughput.gp, from " .. data .. ")"
           or "plot: gnuplot failed or is missing; the data is in " .. data)
end

local function main()
  local f = io.open(HARNESS)
  if not f then error(HARNESS .. " is missing: run `make bench-harness` first") end
  f:close()
  timed_rounds()
  local memory_n = opts.memory and selected("memory") and memory_rounds() or nil
  local irs
  if opts.callgrind then
    irs = {}
    for _, w in ipairs(WORKLOADS) do
      if selected(w.name) then
        io.stderr:write("callgrind " .. w.name .. "\n")
        irs[w.name] = { c = c_per_op(w.c or w.name), lunatls = per_op("lunatls", w.name) }
      end
    end
    for _, w in ipairs(STREAM_WORKLOADS) do
      if selected(w.name) then
        io.stderr:write("callgrind " .. w.name .. "\n")
        irs[w.name] = { c = c_per_op(w.c), lunatls = per_op("lunatls", w.name) }
      end
    end
  end
  print_tables(memory_n, irs)
  plot()
end

main()
