-- Encrypted keys: the password as a string, as a function, and wrong.
local ssl = require "ssl"
local c = require "luasec.common"
local P = {}

local KEY = c.F .. "server-encrypted.key"

function P.server(port)
  local server = c.listen(port)
  local wrong = ssl.newcontext(c.server_params { key = KEY, password = "not it" })
  c.out("wrong password", wrong)
  local calls = 0
  local contexts = {
    assert(ssl.newcontext(c.server_params { key = KEY, password = "secret" })),
    assert(ssl.newcontext(c.server_params { key = KEY, password = function()
      calls = calls + 1
      return "secret"
    end })),
  }
  c.out("callback calls", calls)
  for _, ctx in ipairs(contexts) do
    local conn = assert(ssl.wrap(assert(server:accept()), ctx))
    c.out("handshake", conn:dohandshake())
    conn:close()
  end
end

function P.client(port)
  for _ = 1, 2 do
    local conn = assert(ssl.wrap(c.connect(port), c.client_params()))
    conn:sni("localhost")
    c.out("handshake", conn:dohandshake(), conn:getpeerverification())
    conn:close()
  end
end

return P
