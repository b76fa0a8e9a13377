--- lunatls: TLS for Lua 5.4 over any transport, without blocking.
-- The C core (`lunatls.core`) plus the Lua conveniences.
-- @module lunatls

local core = require "lunatls.core"

local M = {}
for name, value in pairs(core) do
  M[name] = value
end

-- The coroutine layer needs LuaSocket (clock, select): load it on first use,
-- so the core alone works without it (then kept: a require per wrap costs
-- ~0.5 K instructions).
local stream_lib
local function stream_module()
  stream_lib = stream_lib or require "lunatls.stream"
  return stream_lib
end

--- Wraps a transport in a TLS stream (see `lunatls.stream` and
-- docs/coroutines.md). Does no I/O: the handshake runs at
-- `stream:handshake()`, or at the first send/receive.
-- @param transport a transport (docs/transports.md)
-- @param ctx a context from `new_context`
-- @tparam[opt] table opts `server_name`, `session`, `alpn`, `buffer_size`,
-- `timeout`, `deadline`, `close_timeout`
-- @return a `lunatls.Stream`
function M.wrap(transport, ctx, opts)
  return stream_module().wrap(transport, ctx, opts)
end

-- Option `fd` of connect/accept: the function of lunatls.transport.fd
-- that makes the transport (false: the socket transport). The default is
-- true: the socket is new, so nothing waits in LuaSocket's buffer, and
-- OpenSSL on the descriptor is the fastest way (no Lua per record, a copy
-- less, a recv per burst of records: bench/README.md).
local FD_TRANSPORT = { [true] = "new", adopt = "adopt" }

-- Splits connect/accept options: `fd` chooses the transport;
-- `server_name = false` sends no name. The rest is for `wrap`.
local function wrap_options(opts, default_name)
  local copy = {}
  for key, value in pairs(opts or {}) do copy[key] = value end
  local use_fd = copy.fd
  if use_fd == nil then use_fd = true end
  if use_fd and not FD_TRANSPORT[use_fd] then
    error("bad option 'fd' (true, false or \"adopt\" expected)", 3)
  end
  copy.fd = nil
  if default_name and copy.server_name == nil then copy.server_name = default_name end
  if copy.server_name == false then copy.server_name = nil end
  return copy, use_fd
end

-- The deadline of the TCP step: the same rules as a stream operation; a
-- connect also within the handshake's limit (default 10 s), so that a
-- silent network cannot hold it forever. (Waiting for a client to accept
-- has no default limit; its handshake has.)
local function step_deadline(opts, is_connect)
  local socket = require "socket"
  local now = socket.gettime()
  local deadline = opts.deadline
  local limit = is_connect and opts.handshake_timeout
  if is_connect and limit == nil then limit = stream_module().defaults.handshake_timeout end
  for _, seconds in ipairs { opts.timeout or false, limit or false } do
    if seconds then
      local by_timeout = now + seconds
      if not deadline or by_timeout < deadline then deadline = by_timeout end
    end
  end
  return deadline
end

-- Wraps a fresh TCP transport and runs the handshake; closes it on failure.
local function secure(transport, ctx, opts, use_fd)
  if use_fd then
    transport = require("lunatls.transport.fd")[FD_TRANSPORT[use_fd]](transport.socket)
  end
  local ok_wrap, stream = pcall(M.wrap, transport, ctx, opts)
  if not ok_wrap then
    transport:close()
    error(stream, 3)
  end
  local ok, message, code = stream:handshake()
  if not ok then
    stream:close()
    return nil, message, code
  end
  return stream
end

--- Opens a TCP connection and runs the TLS handshake, yielding while it
-- waits (inside a scheduler task).
-- @tparam string host name or address; also the default `server_name`
-- @tparam number port
-- @param ctx a client context
-- @tparam[opt] table opts as `wrap`, plus `fd`: OpenSSL does the socket
-- I/O (`lunatls.transport.fd`) unless `fd = false` (the socket transport:
-- the ciphertext crosses a BIO pair); `fd = "adopt"` also lets the
-- connection own the descriptor and drop LuaSocket's object (`fd.adopt`,
-- ~9 KB less per connection); `server_name = false` sends none
-- @return a stream, or nil, message, code
function M.connect(host, port, ctx, opts)
  local wrap_opts, use_fd = wrap_options(opts, host)
  local transport, message, code = require("lunatls.transport.socket").connect(
    host, port, step_deadline(wrap_opts, true))
  if not transport then return nil, message, code end
  return secure(transport, ctx, wrap_opts, use_fd)
end

--- Accepts one TCP client on a listening LuaSocket socket and runs the TLS
-- handshake with it, yielding while it waits.
-- @param listener a LuaSocket server socket (`socket.bind(...)`)
-- @param ctx a server context
-- @tparam[opt] table opts as `wrap`, plus `fd` (as `connect`)
-- @return a stream, or nil, message, code
function M.accept(listener, ctx, opts)
  local wrap_opts, use_fd = wrap_options(opts, nil)
  local transport, message, code = require("lunatls.transport.socket").accept(
    listener, step_deadline(wrap_opts))
  if not transport then return nil, message, code end
  return secure(transport, ctx, wrap_opts, use_fd)
end

return M
