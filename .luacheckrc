-- luacheck configuration: `make lint` checks lua/, spec/ and examples/ (Lua 5.4).
std = "lua54"
max_line_length = 120
exclude_files = { "build/**" }

-- busted's globals (describe, it, assert.*, finally, ...); expected values
-- written out on one line read better than split ones
files["spec"] = { std = "+busted", max_line_length = 160 }
-- kept on purpose: a require for its side effect, a handle held until the end
-- of a test, a reference dropped before a collection, a method signature
files["spec/03-handshake_spec.lua"] = { ignore = { "211/tls" } }
files["spec/08-interop_spec.lua"] = { ignore = { "211/client" } }
files["spec/31-torture_spec.lua"] = { ignore = { "311/resurrected" } }
files["spec/helpers/pair.lua"] = { ignore = { "212/self" } }
