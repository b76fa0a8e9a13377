--- Real TLS peers for the interop specs: openssl s_server/s_client,
-- gnutls-serv/gnutls-cli and curl, started on 127.0.0.1 with the fixture
-- certificates, each bounded by `timeout 30`. Built on helpers.process: the
-- caller stops every handle (`finally(function() handle:kill() end)`).
--
--     local peers = require "helpers.peers"
--     local server, port = peers.openssl_server { version = "tls1.3", alpn = "http/1.1" }
--     finally(function() server:kill() end)
--
-- gnutls-serv has no option to choose its address: it runs with
-- build/loopback_bind.so preloaded (spec/helpers/loopback_bind.c, built by
-- every suite target: make test, asan, valgrind, gcstress), which turns its
-- wildcard bind() into 127.0.0.1 / ::1; without the shim no gnutls-serv starts.
-- @module helpers.peers

local process = require "helpers.process"

local M = {}

local FIXTURES = "spec/fixtures/"
M.FIXTURES = FIXTURES
M.LOOPBACK_SHIM = (os.getenv("BUILD") or "build") .. "/loopback_bind.so"

local function quote(text)
  return "'" .. text:gsub("'", [['\'']]) .. "'"
end

local OPENSSL_VERSION = { ["tls1.2"] = "-tls1_2", ["tls1.3"] = "-tls1_3" }
local GNUTLS_VERSION = { ["tls1.2"] = "NORMAL:-VERS-ALL:+VERS-TLS1.2",
                         ["tls1.3"] = "NORMAL:-VERS-ALL:+VERS-TLS1.3" }
local CURL_VERSION = { ["tls1.2"] = "--tlsv1.2 --tls-max 1.2", ["tls1.3"] = "--tlsv1.3 --tls-max 1.3" }

-- Starts a server command on a free port and waits until it listens.
local function start_server(build)
  local port = process.free_port()
  local handle = process.spawn("timeout 30 " .. build(port))
  if not process.wait_port(port, 10) then
    handle:kill()
    error("server did not start listening: " .. handle:output(), 3)
  end
  return handle, port
end

--- `openssl s_server -rev` (answers each line reversed). Options: `version`
-- ("tls1.2"/"tls1.3"), `alpn` (comma-separated), `client_cert` (demand and
-- verify one), `sni` (serve wronghost.pem by default and server.pem only to
-- a client that sent the name "localhost": only they verify), `naccept`.
-- @return handle, port
function M.openssl_server(opts)
  return start_server(function(port)
    local args = { "openssl s_server -rev -msg -accept", "127.0.0.1:" .. port,
                   OPENSSL_VERSION[opts.version] }
    if opts.sni then
      args[#args + 1] = ("-cert %swronghost.pem -key %swronghost.key -servername localhost "
        .. "-cert2 %sserver.pem -key2 %sserver.key"):format(FIXTURES, FIXTURES, FIXTURES, FIXTURES)
    else
      args[#args + 1] = ("-cert %sserver.pem -key %sserver.key"):format(FIXTURES, FIXTURES)
    end
    if opts.alpn then args[#args + 1] = "-alpn " .. opts.alpn end
    if opts.client_cert then
      args[#args + 1] = ("-CAfile %sca.pem -Verify 1 -verify_return_error"):format(FIXTURES)
    end
    args[#args + 1] = "-naccept " .. (opts.naccept or 2)
    return table.concat(args, " ")
  end)
end

--- Raises unless the loopback shim is built: without it gnutls-serv would
-- listen on every address (LD_PRELOAD of a missing file is silently ignored).
function M.check_loopback_shim(path)
  path = path or M.LOOPBACK_SHIM
  local file = io.open(path, "rb")
  if not file then
    error(("%s is missing: gnutls-serv would listen on every address; build it with "
      .. "`make %s` (every suite target does)"):format(path, path), 2)
  end
  file:close()
end

--- `gnutls-serv --echo`. Options: `version`, `alpn` (one name; fatal alert
-- on a mismatch), `client_cert` (require and verify one), `sni` (fatal alert
-- unless the client sent "localhost").
-- @return handle, port
function M.gnutls_server(opts)
  M.check_loopback_shim()
  return start_server(function(port)
    local args = { "env LD_PRELOAD=" .. M.LOOPBACK_SHIM, "gnutls-serv --echo --port", tostring(port),
                   ("--x509certfile %sserver.pem --x509keyfile %sserver.key"):format(FIXTURES, FIXTURES),
                   "--priority " .. GNUTLS_VERSION[opts.version] }
    if opts.alpn then args[#args + 1] = "--alpn " .. opts.alpn .. " --alpn-fatal" end
    if opts.client_cert then
      args[#args + 1] = ("--x509cafile %sca.pem --require-client-cert --verify-client-cert"):format(FIXTURES)
    end
    if opts.sni then args[#args + 1] = "--sni-hostname localhost --sni-hostname-fatal" end
    return table.concat(args, " ")
  end)
end

--- `openssl s_client` sending `input`, then reading until the server closes
-- (`-ign_eof`). Options: `version`, `alpn`, `client_cert`, `sess_out` /
-- `sess_in` (a session file).
-- @return handle
function M.openssl_client(port, input, opts)
  local args = { "timeout 30 openssl s_client -ign_eof -connect", "127.0.0.1:" .. port,
                 "-servername localhost -verify_return_error",
                 "-CAfile " .. FIXTURES .. "ca.pem", OPENSSL_VERSION[opts.version] }
  if opts.alpn then args[#args + 1] = "-alpn " .. opts.alpn end
  if opts.client_cert then
    args[#args + 1] = ("-cert %sclient.pem -key %sclient.key"):format(FIXTURES, FIXTURES)
  end
  if opts.sess_out then args[#args + 1] = "-sess_out " .. quote(opts.sess_out) end
  if opts.sess_in then args[#args + 1] = "-sess_in " .. quote(opts.sess_in) end
  return process.spawn(table.concat(args, " "), { stdin = input })
end

--- `gnutls-cli --resume`: connects, then connects again resuming the
-- session, and sends `input` on that second connection. Options: `version`,
-- `alpn`, `client_cert`. Under TLS 1.3 the session to resume comes in the
-- server's ticket, after the handshake: without `--waitresumption`
-- gnutls-cli takes whatever it has when its handshake ends, so a server
-- slowed by the machine's load (CI runs suites side by side) made the second
-- connection a full handshake now and then.
-- @return handle
function M.gnutls_client(port, input, opts)
  local args = { "timeout 30 gnutls-cli 127.0.0.1 --port", tostring(port), "--resume", "--waitresumption",
                 "--sni-hostname localhost --verify-hostname localhost",
                 "--x509cafile " .. FIXTURES .. "ca.pem",
                 "--priority " .. GNUTLS_VERSION[opts.version] }
  if opts.alpn then args[#args + 1] = "--alpn " .. opts.alpn end
  if opts.client_cert then
    args[#args + 1] = ("--x509certfile %sclient.pem --x509keyfile %sclient.key"):format(FIXTURES, FIXTURES)
  end
  return process.spawn(table.concat(args, " "), { stdin = input })
end

--- `curl -v` fetching each of `paths` from https://localhost:port (resolved
-- to 127.0.0.1), HTTP/1.1 only. Options: `version`, `client_cert`.
-- @return handle
function M.curl(port, paths, opts)
  local args = { "timeout 30 curl -sS -v --http1.1",
                 ("--resolve localhost:%d:127.0.0.1"):format(port),
                 "--cacert " .. FIXTURES .. "ca.pem", CURL_VERSION[opts.version] }
  if opts.client_cert then
    args[#args + 1] = ("--cert %sclient.pem --key %sclient.key"):format(FIXTURES, FIXTURES)
  end
  for _, path in ipairs(paths) do
    args[#args + 1] = quote(("https://localhost:%d%s"):format(port, path))
  end
  return process.spawn(table.concat(args, " "))
end

return M
