-- The examples run, as their headers say, and the fifteen-line example in
-- docs/coroutines.md (the one README shows) works as it stands there.

local socket = require "socket"
local process = require "helpers.process"

local ENV = 'LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./build/?.so;;" '

--- Runs a shell command (bounded by `timeout 30`): its output and exit status.
local function run(command)
  local pipe = assert(io.popen(ENV .. "timeout 30 " .. command .. " 2>&1; echo \"exit:$?\""))
  local output = pipe:read("a")
  pipe:close()
  local status = tonumber(output:match("exit:(%d+)%s*$"))
  return output:gsub("exit:%d+%s*$", ""), status
end

--- The first ```lua block under the heading `heading` of a markdown file.
local function lua_block(path, heading)
  local file = assert(io.open(path))
  local text = file:read("a")
  file:close()
  local from = assert(text:find(heading, 1, true), "no heading " .. heading)
  return assert(text:match("```lua\n(.-)```", from), "no lua block")
end

describe("examples", function()
  it("the fifteen-line example of docs/coroutines.md runs as printed", function()
    local code = lua_block("docs/coroutines.md", "## In fifteen lines")
    local _, lines = code:gsub("\n", "")
    assert.equal(15, lines)
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    local file = assert(io.open(path, "w"))
    file:write(code)
    file:close()
    local output, status = run("lua5.4 " .. path)
    assert.equal(0, status, output)
    assert.equal("echo: hello\tTLSv1.3\n", output)
  end)

  it("examples/https_get.lua fetches its own server's page", function()
    local output, status = run("lua5.4 examples/https_get.lua")
    assert.equal(0, status, output)
    assert.matches("^HTTP/1.1 200 OK\n", output)
    assert.matches("You asked for /index.html over TLSv1.3", output)
  end)

  it("examples/https_get.lua fetches a page from openssl s_server -www", function()
    local port = process.free_port()
    local server = process.spawn(("timeout 30 openssl s_server -www -accept 127.0.0.1:%d "
      .. "-cert spec/fixtures/server.pem -key spec/fixtures/server.key"):format(port))
    finally(function() server:kill() end)
    assert(process.wait_port(port, 10), server:output())
    local output, status = run(("lua5.4 examples/https_get.lua https://localhost:%d/ "
      .. "spec/fixtures/ca.pem"):format(port))
    assert.equal(0, status, output)
    assert.matches("^HTTP/1.0 200 ok\n", output)
    assert.matches("s_server -www", output, 1, true)
  end)

  it("examples/https_get.lua reports a certificate it cannot verify", function()
    local port = process.free_port()
    local server = process.spawn(("timeout 30 openssl s_server -www -accept 127.0.0.1:%d "
      .. "-cert spec/fixtures/server.pem -key spec/fixtures/server.key"):format(port))
    finally(function() server:kill() end)
    assert(process.wait_port(port, 10), server:output())
    local output, status = run(("lua5.4 examples/https_get.lua https://localhost:%d/ "
      .. "spec/fixtures/otherca.pem"):format(port))
    assert.equal(1, status, output)
    assert.matches("failed: do_handshake: certificate verify failed", output, 1, true)
  end)

  it("examples/mtls.lua accepts the client certificate from its CA only", function()
    local output, status = run("lua5.4 examples/mtls.lua")
    assert.equal(0, status, output)
    assert.matches("client (client): hello, CN=lunatls test client,O=lunatls tests", output, 1, true)
    assert.matches("client (no certificate): refused: read: tlsv13 alert certificate required", output, 1, true)
    assert.matches("client (otherclient): refused: read: tlsv1 alert unknown ca", output, 1, true)
    assert.matches("server: refused a client: do_handshake: peer did not return a certificate", output, 1, true)
  end)

  it("examples/sni_async.lua loads each host's certificate on first use and refuses unknown names", function()
    local output, status = run("lua5.4 examples/sni_async.lua")
    assert.equal(0, status, output)
    assert.matches("localhost: CN=localhost,O=lunatls tests: hello from localhost", output, 1, true)
    assert.matches("wrong.example: CN=wrong.example,O=lunatls tests: hello from wrong.example", output, 1, true)
    assert.matches("nobody.example: refused: do_handshake: tlsv1 unrecognized name", output, 1, true)
  end)

  it("examples/echo_server.lua, started as a program, echoes to openssl s_client", function()
    local port = process.free_port()
    local server = process.spawn(ENV .. "timeout 30 lua5.4 examples/echo_server.lua " .. port)
    finally(function() server:kill() end)
    assert(process.wait_port(port, 10), server:output())
    local client = process.spawn(("timeout 30 openssl s_client -quiet -connect 127.0.0.1:%d "
      .. "-servername localhost -CAfile spec/fixtures/ca.pem -verify_return_error"):format(port),
      { stdin = "echo me\n" })
    finally(function() client:kill() end)
    local deadline = socket.gettime() + 10
    while not client:output():find("echo me", 1, true) and socket.gettime() < deadline do
      socket.sleep(0.05)
    end
    assert.matches("echo me", client:output(), 1, true)
  end)
end)
