--- The release is consistent: one version (VERSION) in the core, the
-- rockspec and the changelog; both rockspecs install every Lua module.
local tls = require "lunatls"

local function read(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("a")
  file:close()
  return text
end

local function load_rockspec(path)
  local env = {}
  assert(load(read(path), "@" .. path, "t", env))()
  return env
end

-- Every module under lua/, as "lunatls.x.y" -> "lua/lunatls/x/y.lua".
local function lua_modules()
  local modules = {}
  local list = assert(io.popen("cd lua && find lunatls -name '*.lua' | sort"))
  for path in list:lines() do
    local name = path:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    modules[name] = "lua/" .. path
  end
  list:close()
  return modules
end

-- Every C source file of the core, sorted.
local function c_sources()
  local sources = {}
  local list = assert(io.popen("ls src/*.c | sort"))
  for path in list:lines() do sources[#sources + 1] = path end
  list:close()
  return sources
end

local VERSION = read("VERSION"):match("^(%S+)\n$")

describe("the release", function()
  it("has one version: VERSION, lunatls._VERSION, the rockspec, the changelog", function()
    assert.matches("^%d+%.%d+%.%d+$", VERSION)
    assert.are.equal(VERSION, tls._VERSION)
    local spec = load_rockspec("rockspec/lunatls-" .. VERSION .. "-1.rockspec")
    assert.are.equal(VERSION .. "-1", spec.version)
    assert.matches("/lunatls%-" .. VERSION:gsub("%.", "%%.") .. "%.tar%.gz$", spec.source.url)
    assert.are.same({ 'LUNATLS_VERSION="' .. VERSION .. '"' }, spec.build.modules["lunatls.core"].defines)
    assert.truthy(read("CHANGELOG.md"):find("\n## " .. VERSION, 1, true))
  end)

  for _, name in ipairs { "scm", VERSION } do
    it("rockspec " .. name .. " builds every C file, installs every Lua module, needs LuaSocket, is MIT", function()
      local spec = load_rockspec("rockspec/lunatls-" .. name .. "-1.rockspec")
      for module, path in pairs(lua_modules()) do
        assert.are.equal(path, spec.build.modules[module], module)
      end
      local listed = { table.unpack(spec.build.modules["lunatls.core"].sources) }
      table.sort(listed)
      assert.are.same(c_sources(), listed) -- a new src/*.c is built by luarocks too
      assert.are.same({ "lua >= 5.4", "luasocket" }, spec.dependencies)
      assert.are.equal("MIT", spec.description.license)
      assert.matches("MIT License", read("LICENSE"))
      assert.are.same({ "docs", "examples" }, spec.build.copy_directories)
      assert.are.equal("command", spec.test.type)
    end)
  end
end)
