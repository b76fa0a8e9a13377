--- The tooling of issue 12: packages per make target (scripts/deps.sh), the
-- loopback shim built by every suite target and required by the peers helper.
local peers = require "helpers.peers"

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
