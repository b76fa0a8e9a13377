--- LuaSec 1.2's `ssl` module on top of lunatls.
--
--     package.loaded.ssl = require "lunatls.luasec"   -- before anything requires "ssl"
--
-- `newcontext`, `wrap`, `loadcertificate` and the connection methods behave
-- as LuaSec's (docs/luasec.md lists every difference). Connections run in
-- lunatls's fd mode: OpenSSL reads and writes the socket's descriptor itself,
-- as in LuaSec, so `getfd`, `dirty`, `socket.select` on the connection and
-- copas-style `settimeout(0)` loops see the same descriptor and the same
-- `"wantread"`/`"wantwrite"` answers as with LuaSec.
-- @module lunatls.luasec

local tls = require "lunatls"
local x509 = require "lunatls.luasec.x509"
local connection = require "lunatls.luasec.conn"

local M = {
  _VERSION = "1.2.0",
  _COPYRIGHT = "lunatls " .. tls._VERSION .. " (LuaSec 1.2 API)",
  _LUNATLS = tls._VERSION,
}

local Context = {}
Context.__index = Context
Context.__name = "SSL context"
Context.__tostring = function(self)
  return ("SSL context: %p"):format(self)
end

local PROTOCOLS = {
  any = { "tls1.2", nil },
  tlsv1 = { "tls1.0", "tls1.0" },
  tlsv1_1 = { "tls1.1", "tls1.1" },
  tlsv1_2 = { "tls1.2", "tls1.2" },
  tlsv1_3 = { "tls1.3", "tls1.3" },
}

-- LuaSec's option names. Those that change a version bound or tickets are
-- applied; the rest are OpenSSL 3 defaults or have no effect on it.
local OPTIONS = {}
for name in ([[all allow_unsafe_legacy_renegotiation cipher_server_preference
  cisco_anyconnect cookie_exchange cryptopro_tlsext_bug dont_insert_empty_fragments
  enable_middlebox_compat legacy_server_connect microsoft_big_sslv3_buffer
  microsoft_sess_id_bug msie_sslv2_rsa_padding netscape_ca_dn_bug
  netscape_challenge_bug netscape_demo_cipher_change_bug
  netscape_reuse_cipher_change_bug no_anti_replay no_compression no_encrypt_then_mac
  no_query_mtu no_renegotiation no_session_resumption_on_renegotiation no_sslv2
  no_sslv3 no_ticket no_tlsv1 no_tlsv1_1 no_tlsv1_2 no_tlsv1_3 pkcs1_check_1
  pkcs1_check_2 prioritize_chacha single_dh_use single_ecdh_use ssleay_080_client_dh_bug
  sslref2_reuse_cert_type_bug tls_block_padding_bug tls_d5_bug tls_rollback_bug
  ignore_unexpected_eof]]):gmatch("%S+") do
  OPTIONS[name] = true
end

local VERSION_ORDER = { "tls1.0", "tls1.1", "tls1.2", "tls1.3" }
local VERSION_RANK = { ["tls1.0"] = 1, ["tls1.1"] = 2, ["tls1.2"] = 3, ["tls1.3"] = 4 }

local function list_of(value)
  if type(value) == "table" then return value end
  if value == nil then return {} end
  return { value }
end

local function bad(name, message)
  error(("newcontext: bad parameter '%s' (%s)"):format(name, message), 0)
end

-- protocol and the no_tlsv* options -> min_version/max_version.
local function set_versions(opts, params)
  local protocol = params.protocol or "any"
  local bounds = PROTOCOLS[protocol]
  if not bounds then bad("protocol", "one of any, tlsv1_2, tlsv1_3, tlsv1, tlsv1_1 expected") end
  local low, high = VERSION_RANK[bounds[1]], bounds[2] and VERSION_RANK[bounds[2]] or 4
  for _, name in ipairs(list_of(params.options)) do
    local version = type(name) == "string" and name:match("^no_tlsv(.*)$")
    local rank = ({ ["1"] = 1, ["1_1"] = 2, ["1_2"] = 3, ["1_3"] = 4 })[version]
    if rank == low and low < high then low = low + 1 end
    if rank == high and high > low then high = high - 1 end
  end
  opts.min_version, opts.max_version = VERSION_ORDER[low], VERSION_ORDER[high]
end

local function check_options(opts, params)
  for _, name in ipairs(list_of(params.options)) do
    if not OPTIONS[name] then bad("options", "unknown option " .. tostring(name)) end
    if name == "no_ticket" then opts.tickets = false end
  end
end

-- verify = "none" | "peer" | {"peer", "fail_if_no_peer_cert", "client_once"}
local function verify_mode(params)
  local peer, require_cert = false, false
  for _, word in ipairs(list_of(params.verify)) do
    if word == "peer" then peer = true
    elseif word == "fail_if_no_peer_cert" then require_cert = true
    elseif word ~= "none" and word ~= "client_once" then
      bad("verify", "none, peer, fail_if_no_peer_cert or client_once expected, got " .. tostring(word))
    end
  end
  if not peer then return "none" end
  if params.mode == "server" and require_cert then return "require" end
  return "peer"
end

local function set_credentials(opts, params)
  local first = params.certificates and params.certificates[1] or params
  opts.certificate, opts.key = first.certificate, first.key
  local password = first.password
  if password ~= nil and type(password) ~= "string" and type(password) ~= "function" then
    bad("password", "string or function expected")
  end
  opts.password = password
end

-- LuaSec's alpn(offered) returns a name or a list in the server's order;
-- lunatls wants the chosen name: the first of ours that the client offers.
local function alpn_adapter(select)
  return function(offered)
    local ours = select(offered)
    if type(ours) == "string" then ours = { ours } end
    if type(ours) ~= "table" then return nil end
    for _, name in ipairs(ours) do
      for _, theirs in ipairs(offered) do
        if name == theirs then return name end
      end
    end
    return nil
  end
end

local function set_alpn(opts, params)
  local alpn = params.alpn
  if alpn == nil then return end
  if type(alpn) == "string" then alpn = { alpn } end
  if type(alpn) == "function" then
    if params.mode ~= "server" then bad("alpn", "a function is for servers") end
    opts.alpn = alpn_adapter(alpn)
  elseif type(alpn) == "table" then
    opts.alpn = alpn
  else
    bad("alpn", "list of strings, string or function expected")
  end
end

-- verifyext: "lsec_continue" finishes the handshake whatever the chain
-- (getpeerverification then reports); "lsec_ignore_purpose" has no effect;
-- "crl_check"/"crl_check_chain" become verify_flags.
local function set_verifyext(opts, params)
  local flags = {}
  for _, word in ipairs(list_of(params.verifyext)) do
    if word == "lsec_continue" then opts.verify = "none"
    elseif word == "crl_check" then flags[#flags + 1] = "crl_check"
    elseif word == "crl_check_chain" then flags[#flags + 1] = "crl_check_all"
    elseif word ~= "lsec_ignore_purpose" then
      bad("verifyext", "lsec_continue, lsec_ignore_purpose, crl_check or crl_check_chain expected, got "
          .. tostring(word))
    end
  end
  if #flags > 0 then opts.verify_flags = flags end
end

local function lunatls_options(params)
  local opts = {
    mode = params.mode,
    cafile = params.cafile, capath = params.capath,
    verify = verify_mode(params),
    ciphers = params.ciphers, ciphersuites = params.ciphersuites,
    groups = params.curveslist or params.curve,
    verify_depth = params.depth,
  }
  if params.dhparam ~= nil and type(params.dhparam) ~= "function" then
    bad("dhparam", "function expected")
  end
  set_versions(opts, params)
  check_options(opts, params)
  set_credentials(opts, params)
  set_alpn(opts, params)
  set_verifyext(opts, params)
  if params.mode == "server" then opts.servername = connection.servername end
  return opts
end

--- Creates a context from LuaSec's parameter table.
-- @tparam table params `mode`, `protocol`, `key`, `certificate`, `password`,
-- `cafile`, `capath`, `verify`, `options`, `ciphers`, `ciphersuites`,
-- `curve`/`curveslist`, `depth`, `alpn`, `verifyext`, `dhparam` (accepted; OpenSSL 3
-- chooses the DH group itself), `certificates` (the first pair is used)
-- @return a context, or nil, message when a file will not load
function M.newcontext(params)
  if type(params) ~= "table" then
    error("bad argument #1 to 'newcontext' (table expected, got " .. type(params) .. ")", 2)
  end
  if params.mode ~= "client" and params.mode ~= "server" then
    bad("mode", "client or server expected, got " .. tostring(params.mode))
  end
  local self = setmetatable({ mode = params.mode }, Context)
  local opts = lunatls_options(params)
  local ctx, message = tls.new_context(opts)
  if not ctx then return nil, message end
  self.ctx = ctx
  return self
end

--- True for a context made by `newcontext`.
function M.iscontext(value)
  return getmetatable(value) == Context
end

--- Wraps a connected LuaSocket TCP socket (LuaSec's `ssl.wrap`). The
-- socket's descriptor moves to the connection: `sock:getfd()` is then -1.
-- @param sock a LuaSocket TCP client socket
-- @param ctx_or_params a context, or a parameter table for `newcontext`
-- @return a connection, or nil, message
function M.wrap(sock, ctx_or_params)
  if type(sock) ~= "table" and type(sock) ~= "userdata" or not sock.getfd then
    error("bad argument #1 to 'wrap' (LuaSocket socket expected, got " .. type(sock) .. ")", 2)
  end
  local ctx = ctx_or_params
  if not M.iscontext(ctx) then
    if type(ctx) ~= "table" then
      error("bad argument #2 to 'wrap' (context or table expected, got " .. type(ctx) .. ")", 2)
    end
    local message
    ctx, message = M.newcontext(ctx_or_params)
    if not ctx then return nil, message end
  end
  return connection.new(sock, ctx)
end

M.loadcertificate = x509.load

--- What this implementation supports, shaped as LuaSec's `ssl.config`.
M.config = {
  protocols = { tlsv1 = true, tlsv1_1 = true, tlsv1_2 = true, tlsv1_3 = true },
  options = OPTIONS,
  algorithms = { ec = true },
  capabilities = { alpn = true, curves_list = true },
}

return M
