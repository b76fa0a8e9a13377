--- The tooling of issue 12: packages per make target (scripts/deps.sh), the
-- loopback shim built by every suite target and required by the peers helper;
-- and the process helper that starts and stops the peers.
local peers = require "helpers.peers"
local process = require "helpers.process"

local function run(command)
  local pipe = assert(io.popen(command .. " 2>&1"))
  local output = pipe:read("a")
  local ok = pipe:close()
  return output, ok
end

local function set_of(words)
  local set = {}
  for word in words:gmatch("%S+") do set[word] = true end
  return set
end

describe("scripts/deps.sh", function()
  it("make demo needs the compiler, Lua 5.4 and its headers, libssl-dev: nothing else", function()
    local output, ok = run("sh scripts/deps.sh --list demo")
    assert.is_true(ok, output)
    assert.are.same(set_of("gcc make lua5.4 liblua5.4-dev libssl-dev"), set_of(output))
  end)

  it("make test needs the test tools and peers, but not valgrind", function()
    local packages = set_of((run("sh scripts/deps.sh --list test")))
    for _, name in ipairs { "lua-busted", "lua-socket", "lua-sec", "openssl", "gnutls-bin", "curl" } do
      assert.is_true(packages[name], name)
    end
    assert.is_nil(packages.valgrind)
    assert.is_true(set_of((run("sh scripts/deps.sh --list robust"))).valgrind)
  end)

  it("refuses an unknown target", function()
    local output, ok = run("sh scripts/deps.sh --list nonsense")
    assert.is_falsy(ok)
    assert.matches("unknown target 'nonsense'", output)
  end)
end)

describe("helpers.process", function()
  local function exists(path)
    local file = io.open(path)
    if file then file:close() end
    return file ~= nil
  end

  local function files_of(handle)
    local paths = { handle.output_path }
    if handle.input_path then paths[#paths + 1] = handle.input_path end
    return paths
  end

  -- each leaked handle left a temporary file behind (hundreds per run)
  it("leaves no temporary file: a process that exits, one killed, one forgotten", function()
    local exited = process.spawn("cat", { stdin = "hello\n" })
    local paths = files_of(exited)
    assert.is_true(exited:wait(5))
    assert.equal("hello\n", exited:output())
    for _, path in ipairs(paths) do assert.is_false(exists(path), path) end

    local killed = process.spawn("sleep 30", { stdin = "x" })
    paths = files_of(killed)
    killed:kill()
    assert.is_false(killed:alive())
    for _, path in ipairs(paths) do assert.is_false(exists(path), path) end

    local forgotten = process.spawn("sleep 30", { stdin = "x" })
    local alive, Handle = forgotten.alive, getmetatable(forgotten)
    local pid = forgotten.pid
    paths = files_of(forgotten)
    forgotten = nil -- luacheck: ignore 311 (dropped, for the collector)
    collectgarbage()
    collectgarbage()
    assert.is_false(alive(setmetatable({ pid = pid, killed = true }, Handle)), "the forgotten process still runs")
    for _, path in ipairs(paths) do assert.is_false(exists(path), path) end
  end)
end)

describe("finally (spec/helpers/finally.lua)", function()
  local ran = {}
  it("keeps every function a test gives it", function()
    finally(function() ran[#ran + 1] = "first" end)
    finally(function() ran[#ran + 1] = "second" end)
  end)

  it("ran them all, the last given first", function()
    assert.same({ "second", "first" }, ran)
  end)
end)

describe("the loopback shim", function()
  for _, target in ipairs { "test", "asan", "valgrind", "gcstress" } do
    it("is built by make " .. target, function()
      local scratch = os.tmpname()
      os.remove(scratch)
      local output = run("make -n BUILD=" .. scratch .. " " .. target)
      assert.truthy(output:find("-o " .. scratch .. "/loopback_bind.so", 1, true), output)
    end)
  end

  it("must exist before the helper starts gnutls-serv", function()
    local saved = peers.LOOPBACK_SHIM
    peers.LOOPBACK_SHIM = "build/no-such-shim.so"
    local ok, err = pcall(peers.gnutls_server, { version = "tls1.3" })
    peers.LOOPBACK_SHIM = saved
    assert.is_false(ok)
    assert.matches("build/no%-such%-shim%.so is missing", err)
    assert.has_no.errors(function() peers.check_loopback_shim() end)
  end)
end)

describe("docs/core.ldoc.lua (the C API for LDoc)", function()
  local tls = require "lunatls.core"
  local pair = require "helpers.pair"

  local function documented()
    local file = assert(io.open("docs/core.ldoc.lua", "rb"))
    local text = file:read("a")
    file:close()
    local names = { core = {} }
    for name in text:gmatch("\nfunction core%.([%w_]+)") do names.core[name] = true end
    for name in text:gmatch("\ncore%.([%w_]+) =") do names.core[name] = true end
    for class, method in text:gmatch("\nfunction (%u%w*):([%w_]+)") do
      names[class] = names[class] or {}
      names[class][method] = true
    end
    return names
  end

  local function real(object)
    local set = {}
    for name in pairs(debug.getmetatable(object).__index) do set[name] = true end
    return set
  end

  it("documents exactly the functions and methods of the core", function()
    local p = pair.new():connect()
    p.client.conn:read() -- TLS 1.3: the ticket, so that a session exists
    local module = {}
    for name in pairs(tls) do module[name] = true end
    local names = documented()
    assert.are.same(module, names.core)
    assert.are.same(real(pair.client_context()), names.Context)
    assert.are.same(real(p.client.conn), names.Conn)
    assert.are.same(real((tls.new_bio_pair())), names.BIO)
    assert.are.same(real(p.client.conn:peer_certificate()), names.Certificate)
    assert.are.same(real(p.client.conn:session()), names.Session)
  end)
end)

-- The first ```lua block of a Markdown file that contains `marker`.
local function snippet(path, marker)
  local file = assert(io.open(path, "rb"))
  local text = file:read("a")
  file:close()
  for code in text:gmatch("```lua\n(.-)```") do
    if code:find(marker, 1, true) then return code end
  end
  error("no snippet with " .. marker .. " in " .. path)
end

describe("snippets run as written", function()
  local tls = require "lunatls"
  local pair = require "helpers.pair"

  it("README's BIO-pair loop moves the last flight (a TLS 1.3 server then finishes)", function()
    local code = snippet("README.md", "conn:bio()"):gsub('"ca%.pem"', '"spec/fixtures/ca.pem"')
    local server = pair.server_context():new_conn()
    local server_net = server:bio()
    local printed
    local env = setmetatable({
      tls = tls,
      print = function(...) printed = table.pack(...) end,
      transport_send = function(data)
        assert.are.equal(#data, server_net:write(data))
        server:do_handshake()
      end,
      transport_receive = function()
        server:do_handshake()
        local parts = {}
        repeat
          local data = server_net:read()
          parts[#parts + 1] = data
        until not data
        return table.concat(parts)
      end,
    }, { __index = _G })
    assert(load(code, "=README.md", "t", env))()
    assert.are.equal("TLSv1.3", printed[1])
    assert.are.equal("done", server:do_handshake()) -- the client's Finished arrived
  end)

  it("docs/transports.md's luv example, lunatls.transport.luv (needs lua-luv)", function()
    if not pcall(require, "luv") then
      pending("lua-luv is not installed")
      return
    end
    local port = process.free_port()
    local server = process.spawn(("REQUESTS=1 timeout 20 lua5.4 spec/luasec/run.lua lunatls https_server "
      .. "server %d"):format(port))
    finally(function() server:kill() end)
    assert(process.wait_port(port, 10), server:output())
    -- the recipes assume `ctx`, a client context (docs/transports.md says so)
    local code = 'local ctx = assert(require("lunatls").new_context { mode = "client", '
      .. 'cafile = "spec/fixtures/ca.pem" })\n'
      .. snippet("docs/transports.md", 'require "lunatls.transport.luv"'):gsub("4433", tostring(port))
    local output, ok = process.run_script(code, "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' "
      .. "LUA_CPATH='./build/?.so;;' timeout 20 lua5.4 %s 2>&1")
    assert.is_true(ok, output)
    assert.matches("HTTP/1.0 200 OK", output)
    assert.matches("GET / HTTP/1.0 body=0", output)
  end)
end)
