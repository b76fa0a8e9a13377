--- Invariants every lunatls result must satisfy, shared by the fuzz drivers
-- (fuzz/*.lua) and the specs that replay them (spec/33-fuzz-regressions_spec.lua).
-- A violation raises an error starting with "INVARIANT": the libFuzzer
-- harness turns it into a crash, busted into a failure.
-- @module check

local M = {}

--- The documented error codes (third value of a failure), minus "config",
-- which no I/O call returns.
M.IO_CODES = { verify = true, protocol = true, eof = true, closed = true, syscall = true,
               callback = true, memory = true }

local function fail(fmt, ...)
  error("INVARIANT: " .. fmt:format(...), 2)
end
M.fail = fail

--- The operations a message may begin with: the call's own, or for a
-- connection that had already failed, the one that failed first (a failed
-- connection repeats its failure, spec/04-io_spec.lua).
local IO_OPS = { do_handshake = true, read = true, write = true, shutdown = true, key_update = true }

--- Messages a person can act on: "<op>: <reason>", never OpenSSL's
-- placeholders.
local function check_message(op, message)
  if type(message) ~= "string" then fail("%s: message is a %s", op, type(message)) end
  local named = message:match("^([%w_]+): .")
  if named ~= op and not (IO_OPS[op] and IO_OPS[named]) then
    fail("%s: message %q lacks the operation", op, message)
  end
  if message:find("(null)", 1, true) or message:find("unknown TLS error", 1, true)
     or message:find("no reason given", 1, true) then
    fail("%s: unhelpful message %q", op, message)
  end
end

--- A failure triple nil, message, code with a documented code; fd_mode
-- allows "syscall".
local function check_failure(op, message, code, fd_mode)
  check_message(op, message)
  if not M.IO_CODES[code] or (code == "syscall" and not fd_mode) then
    fail("%s: undocumented code %s (%s)", op, tostring(code), message)
  end
end

--- do_handshake / shutdown: "done" | "want_read" | "want_write" | nil, msg, code.
function M.first_status(op, status, message, code, n)
  if status == "done" or status == "want_read" or status == "want_write" or status == "want_certificate" then
    if n ~= 1 then fail("%s: %d results with status %s", op, n, status) end
    return status
  end
  if status ~= nil then fail("%s: unexpected first value %s", op, tostring(status)) end
  check_failure(op, message, code)
  if n ~= 3 then fail("%s: %d results in a failure", op, n) end
  return nil, message, code
end

--- read: data | nil, "want_read" | "want_write" | "closed" | nil, msg, code.
function M.read_result(data, status, code, n, max)
  if type(data) == "string" then
    if #data == 0 then fail("read: returned an empty string") end
    if max and #data > max then fail("read: %d bytes for max %d", #data, max) end
    if n ~= 1 then fail("read: %d results with data", n) end
    return data
  end
  if data ~= nil then fail("read: unexpected first value %s", tostring(data)) end
  if n == 2 then
    if status ~= "want_read" and status ~= "want_write" and status ~= "closed" then
      fail("read: unexpected status %s", tostring(status))
    end
    return nil, status
  end
  if n ~= 3 then fail("read: %d results", n) end
  check_failure("read", status, code)
  return nil, status, code
end

--- write: n (0 <= n <= len, 0 only for "") | nil, status | nil, msg, code.
function M.write_result(taken, status, code, n, len)
  if math.type(taken) == "integer" then
    if taken < 0 or taken > len or (taken == 0 and len > 0) then
      fail("write: took %d of %d bytes", taken, len)
    end
    if n ~= 1 then fail("write: %d results with a count", n) end
    return taken
  end
  if taken ~= nil then fail("write: unexpected first value %s", tostring(taken)) end
  if n == 2 then
    if status ~= "want_read" and status ~= "want_write" and status ~= "closed" then
      fail("write: unexpected status %s", tostring(status))
    end
    return nil, status
  end
  if n ~= 3 then fail("write: %d results", n) end
  check_failure("write", status, code)
  return nil, status, code
end

--- An error a method raised: only the documented programming errors.
local RAISED = {
  "attempt to use a closed lunatls%.%a+",
  "bad argument #%d+ to '[%w_.?]+'", -- '?' through pcall, 'lunatls.core.f' for module functions
  "lunatls%.Conn is busy",
  "^set_context: the handshake is not waiting for a certificate",
  "calling '[%w_]+' on bad self",
}
function M.raised(err)
  if type(err) ~= "string" then fail("raised a %s", type(err)) end
  for _, pattern in ipairs(RAISED) do
    if err:find(pattern) then return err end
  end
  fail("raised an undocumented error: %s", err)
end

--- Failures that only say a call came at the wrong moment (src/errors.c,
-- is_usage_error): the connection goes on, they are not kept.
local USAGE_REASONS = { "protocol is shutdown", "shutdown while in init", "bad write retry",
                        "uninitialized", "handshake not done", "the handshake is not done" }
function M.is_usage_error(message)
  for _, reason in ipairs(USAGE_REASONS) do
    if message:sub(-#reason - 2) == ": " .. reason then return true end
  end
  return false
end

--- Packs results with their count.
function M.pack(...)
  return select("#", ...), ...
end

return M
