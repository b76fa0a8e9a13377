-- A copas-style loop: every connection a coroutine that yields on
-- "wantread"/"wantwrite" (settimeout(0)), one socket.select for all; 50
-- clients and their server connections in one process.
local ssl = require "ssl"
local socket = require "socket"
local c = require "luasec.common"
local P = {}

local COUNT = 50

-- The scheduler: tasks yield ("read"|"write", socket) and resume when ready.
local function run(tasks, seconds)
  local waiting, fresh, deadline = {}, {}, socket.gettime() + seconds
  local function start(f) fresh[#fresh + 1] = coroutine.create(f) end
  local function step(co)
    local ok, what, sock = coroutine.resume(co, start)
    assert(ok, what)
    if coroutine.status(co) ~= "dead" then waiting[co] = { what, sock } end
  end
  for _, f in ipairs(tasks) do start(f) end
  repeat
    while #fresh > 0 do step(table.remove(fresh, 1)) end
    local r, w, ready = {}, {}, {}
    for _, wait in pairs(waiting) do table.insert(wait[1] == "read" and r or w, wait[2]) end
    local readable, writable = socket.select(r, w, 1)
    for co, wait in pairs(waiting) do
      if readable[wait[2]] or writable[wait[2]] then ready[#ready + 1] = co end
    end
    for _, co in ipairs(ready) do
      waiting[co] = nil
      step(co)
    end
  until (not next(waiting) and #fresh == 0) or socket.gettime() > deadline
  return next(waiting) == nil
end

-- Repeats a nonblocking call, yielding while it wants to wait.
local function nb(conn, method, ...)
  while true do
    local a, err, partial = conn[method](conn, ...)
    if err == "wantread" or err == "timeout" and method == "accept" then
      coroutine.yield("read", conn)
    elseif err == "wantwrite" then
      coroutine.yield("write", conn)
    else
      return a, err, partial
    end
  end
end

local function handshake(conn)
  conn:settimeout(0)
  local ok, err = nb(conn, "dohandshake")
  return ok or error("handshake: " .. tostring(err))
end

function P.server() end

function P.client()
  local server = assert(socket.bind("127.0.0.1", 0, 64))
  server:settimeout(0)
  local _, port = server:getsockname()
  local sctx = assert(ssl.newcontext(c.server_params()))
  local cctx = assert(ssl.newcontext(c.client_params()))
  local echoed, answers = 0, 0
  local tasks = {}
  tasks[1] = function(start)
    for _ = 1, COUNT do
      local sock = nb(server, "accept")
      start(function()
        local conn = assert(ssl.wrap(sock, sctx))
        handshake(conn)
        local line = nb(conn, "receive", "*l")
        nb(conn, "send", line:upper() .. "\n")
        echoed = echoed + 1
        conn:close()
      end)
    end
  end
  for i = 1, COUNT do
    tasks[#tasks + 1] = function()
      local sock = socket.tcp()
      sock:settimeout(0)
      local ok, err = sock:connect("127.0.0.1", port)
      if not ok and err == "timeout" then coroutine.yield("write", sock) end
      local conn = assert(ssl.wrap(sock, cctx))
      conn:sni("localhost")
      handshake(conn)
      nb(conn, "send", "client " .. i .. "\n")
      if nb(conn, "receive", "*l") == "CLIENT " .. i then answers = answers + 1 end
      conn:close()
    end
  end
  c.out("finished", run(tasks, 30))
  c.out("echoed", echoed, "answers", answers)
end

return P
