-- SNI: a server with a name map (localhost -> its certificate, default the
-- wrong.example one), then a strict map that refuses unknown names.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

local function cn(conn)
  local cert = conn:getpeercertificate()
  local subject = cert and cert:subject() or {}
  return subject[#subject] and subject[#subject].value
end

function P.server(port)
  local server = c.listen(port)
  local default = assert(ssl.newcontext(c.server_params {
    key = c.F .. "wronghost.key", certificate = c.F .. "wronghost.pem" }))
  local named = assert(ssl.newcontext(c.server_params()))
  for round = 1, 3 do
    local conn = assert(ssl.wrap(assert(server:accept()), default))
    conn:sni({ localhost = named }, round == 3)
    local ok = conn:dohandshake()
    c.out("handshake", ok, conn:getsniname())
    if ok then c.out("send", conn:send("served\n")) end
    conn:close()
  end
end

function P.client(port)
  for _, name in ipairs { "localhost", "other.example", "third.example" } do
    local conn = assert(ssl.wrap(c.connect(port), c.client_params { verify = "none" }))
    conn:sni(name)
    local ok = conn:dohandshake()
    c.out("handshake", name, ok, conn:getsniname())
    if ok then c.out("certificate", cn(conn), conn:receive("*l")) end
    conn:close()
  end
end

return P
