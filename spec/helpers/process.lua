--- Start, watch and stop real peer processes (openssl s_server, gnutls-cli,
-- curl...) from a busted spec.
--
-- A command runs under `setsid`, so it leads a session of its own whose id is
-- its pid: `kill` signals that session only, which also reaches children such
-- as the program behind a `timeout 30 ...` wrapper (timeout moves itself into
-- a process group of its own, so signalling the group alone would miss it).
-- Output (stdout and stderr together) goes to a temporary file.
--
--     local process = require "helpers.process"
--     local port = process.free_port()
--     local server = process.spawn("timeout 30 openssl s_server -accept " .. port .. " ...")
--     finally(function() server:kill() end)
--     assert(process.wait_port(port, 5), server:output())
--
-- Linux only: `wait_port` and `alive` read /proc.
-- @module helpers.process

local socket = require "socket"

local M = {}

--- Quotes a string for `sh`.
local function shell_quote(text)
  return "'" .. text:gsub("'", [['\'']]) .. "'"
end

--- Reads a whole file, or returns "" when it is missing.
local function read_file(path)
  local file = io.open(path, "rb")
  if not file then return "" end
  local text = file:read("a")
  file:close()
  return text
end

local function write_file(path, text)
  local file = assert(io.open(path, "wb"))
  assert(file:write(text))
  file:close()
end

--- Runs Lua source `code` in a child process: writes it to a temporary
-- file, runs the shell command `command` with `%s` replaced by that file's
-- path (say `2>&1` in it to see stderr too), then removes the file.
-- @return everything the command printed, and what closing its pipe says
-- (true, or nil, "exit"/"signal", status)
function M.run_script(code, command)
  local path = os.tmpname()
  write_file(path, code)
  local pipe = assert(io.popen(command:format(path)))
  local output = pipe:read("a")
  local ok, how, status = pipe:close()
  os.remove(path)
  return output, ok, how, status
end

--- The resident memory of process `pid` (default: this one), in KiB.
function M.rss_kib(pid)
  return tonumber(read_file("/proc/" .. (pid or "self") .. "/status"):match("VmRSS:%s*(%d+)"))
end

--- How many descriptors process `pid` (default: this one) has open.
function M.open_descriptors(pid)
  -- ls runs under a shell, whose parent ($PPID) is this process
  local pipe = assert(io.popen("ls /proc/" .. (pid or "$PPID") .. "/fd 2>/dev/null | wc -l"))
  local count = tonumber(pipe:read("a"))
  pipe:close()
  return count
end

--- Sleeps for `seconds` (fractions allowed).
function M.sleep(seconds)
  socket.sleep(seconds)
end

--- An ephemeral TCP port that is free on 127.0.0.1 right now (the kernel's
-- choice, released at once; another process could take it before you do, which
-- is unlikely enough for tests).
function M.free_port()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  server:close()
  return assert(tonumber(port))
end

-- Local addresses (as /proc/net/tcp{,6} spell them) that accept connections
-- to 127.0.0.1: loopback, the IPv4 wildcard, the dual-stack IPv6 wildcard and
-- the IPv4-mapped loopback.
local REACHES_LOOPBACK = {
  ["0100007F"] = true,
  ["00000000"] = true,
  ["00000000000000000000000000000000"] = true,
  ["0000000000000000FFFF00000100007F"] = true,
}

local function listening_in(table_path, suffix)
  local file = io.open(table_path, "r")
  if not file then return false end
  for line in file:lines() do
    -- sl local_address rem_address st ...; state 0A is LISTEN
    local host, port, state = line:match("^%s*%d+:%s+(%x+):(%x+)%s+%x+:%x+%s+(%x+)")
    if state == "0A" and port == suffix and REACHES_LOOPBACK[host] then
      file:close()
      return true
    end
  end
  file:close()
  return false
end

--- Is some socket listening on 127.0.0.1 (directly or through a wildcard) at
-- `port`? Reads /proc/net/tcp and tcp6 rather than connecting, so a server
-- started with `-naccept 1` does not spend its only accept on the probe.
local function is_listening(port)
  local suffix = ("%04X"):format(port)
  return listening_in("/proc/net/tcp", suffix) or listening_in("/proc/net/tcp6", suffix)
end

--- Waits until something listens on 127.0.0.1:`port`; true when it does,
-- false after `seconds` (default 5).
function M.wait_port(port, seconds)
  local deadline = socket.gettime() + (seconds or 5)
  repeat
    if is_listening(port) then return true end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return is_listening(port)
end

local Handle = {}
Handle.__index = Handle

--- Is the process still running? (A zombie, exited but not reaped, counts as gone.)
function Handle:alive()
  local stat = read_file("/proc/" .. self.pid .. "/stat")
  if stat == "" then return false end
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= "Z" and state ~= "X"
end

--- Keeps what the process printed and removes its temporary files: called
-- once it has exited or been killed (its output is then complete).
local function settle(self)
  if self.final_output then return end
  self.final_output = read_file(self.output_path)
  os.remove(self.output_path)
  if self.input_path then os.remove(self.input_path) end
end

--- Waits up to `seconds` (default 5) for the process to exit; true if it did
-- (its temporary files are then gone, and `output()` is final).
function Handle:wait(seconds)
  local deadline = socket.gettime() + (seconds or 5)
  while self:alive() do
    if socket.gettime() > deadline then return false end
    socket.sleep(0.02)
  end
  settle(self)
  return true
end

--- Everything the process printed so far (stdout and stderr together).
-- Programs buffer stdout written to a file: start them under `stdbuf -oL` to
-- see their lines as they print them.
function Handle:output()
  if self.final_output then return self.final_output end
  return read_file(self.output_path)
end

--- Waits up to `seconds` (default 5) until the output contains `text` (plain
-- text, not a pattern); true if it does.
function Handle:wait_output(text, seconds)
  local deadline = socket.gettime() + (seconds or 5)
  while not self:output():find(text, 1, true) do
    if socket.gettime() > deadline or not self:alive() then
      return self:output():find(text, 1, true) ~= nil
    end
    socket.sleep(0.02)
  end
  return true
end

--- Stops the process and everything it started (SIGTERM, then SIGKILL after
-- one second), then removes the temporary files. Idempotent; call it from
-- `finally` or `teardown`. `output()` still works afterwards. A handle that
-- is collected (at the latest when busted closes its Lua state) is killed
-- too, so neither a forgotten process nor its files outlive the run.
function Handle:kill()
  if self.killed then return end
  self.killed = true
  if not self.pid then return settle(self) end -- spawn failed before the pid
  local session = tostring(self.pid)
  os.execute("pkill -TERM -s " .. session .. " 2>/dev/null")
  if not self:wait(1) then
    os.execute("pkill -KILL -s " .. session .. " 2>/dev/null")
    self:wait(1)
  end
  settle(self)
end

Handle.__gc = Handle.kill

--- Starts `command` (a shell command line) in the background.
-- `options.stdin`: a string fed to its standard input (default: /dev/null, so
-- the program reads end of file at once: `openssl s_client` then quits after
-- the handshake unless given `-ign_eof`).
-- Returns a handle with `pid`, `kill()`, `alive()`, `wait([seconds])`,
-- `output()`, `wait_output(text[, seconds])`.
function M.spawn(command, options)
  options = options or {}
  local handle = setmetatable({ output_path = os.tmpname() }, Handle)
  local input = "/dev/null"
  if options.stdin then
    handle.input_path = os.tmpname()
    write_file(handle.input_path, options.stdin)
    input = handle.input_path
  end
  -- The background job's output goes to files, so popen's pipe closes as soon
  -- as `echo` has printed the pid.
  local line = ("setsid sh -c %s <%s >%s 2>&1 & echo $!"):format(
    shell_quote(command), shell_quote(input), shell_quote(handle.output_path))
  local pipe = assert(io.popen(line, "r"))
  local pid = pipe:read("l")
  pipe:close()
  handle.pid = assert(tonumber(pid), "process.spawn: no pid for " .. command)
  return handle
end

return M
