rockspec_format = "3.0"
package = "lunatls"
version = "0.2.0-1"
source = {
  -- `make dist` builds this file (build/dist/) from the tree; publish it at this address.
  url = "https://github.com/lunatls/lunatls/releases/download/v0.2.0/lunatls-0.2.0.tar.gz",
  dir = "lunatls-0.2.0",
}
description = {
  summary = "Nonblocking TLS for Lua 5.4 over any transport (OpenSSL 3)",
  detailed = [[
lunatls binds OpenSSL's TLS so that handshakes, reads, writes and shutdown
never block: the C core returns a status ("done", "want_read", "want_write")
and a small Lua layer turns it into coroutine yields, over LuaSocket, memory
pipes, BIO pairs or nonblocking file descriptors. lunatls.luasec runs LuaSec
programs unchanged, with the host name checked.
]],
  homepage = "https://github.com/lunatls/lunatls",
  license = "MIT",
  labels = { "tls", "ssl", "openssl", "nonblocking", "coroutines" },
}
dependencies = {
  "lua >= 5.4",
  "luasocket",
}
external_dependencies = {
  OPENSSL = { header = "openssl/ssl.h" },
}
build = {
  type = "builtin",
  modules = {
    ["lunatls.core"] = {
      sources = {
        "src/binding.c", "src/bio.c", "src/buffer.c", "src/callback.c", "src/conn.c", "src/context.c",
        "src/core.c", "src/errors.c", "src/hello.c", "src/options.c", "src/pair.c", "src/poller.c",
        "src/revocation.c", "src/session.c", "src/socket.c", "src/source.c", "src/tickets.c", "src/x509.c",
      },
      defines = { 'LUNATLS_VERSION="0.2.0"' },
      libraries = { "ssl", "crypto" },
      incdirs = { "$(OPENSSL_INCDIR)" },
      libdirs = { "$(OPENSSL_LIBDIR)" },
    },
    ["lunatls"] = "lua/lunatls/init.lua",
    ["lunatls.stream"] = "lua/lunatls/stream.lua",
    ["lunatls.driver"] = "lua/lunatls/driver.lua",
    ["lunatls.scheduler"] = "lua/lunatls/scheduler.lua",
    ["lunatls.transport.socket"] = "lua/lunatls/transport/socket.lua",
    ["lunatls.transport.memory"] = "lua/lunatls/transport/memory.lua",
    ["lunatls.transport.fd"] = "lua/lunatls/transport/fd.lua",
    ["lunatls.transport.cqueues"] = "lua/lunatls/transport/cqueues.lua",
    ["lunatls.transport.luv"] = "lua/lunatls/transport/luv.lua",
    ["lunatls.luasec"] = "lua/lunatls/luasec.lua",
    ["lunatls.luasec.conn"] = "lua/lunatls/luasec/conn.lua",
    ["lunatls.luasec.x509"] = "lua/lunatls/luasec/x509.lua",
    ["lunatls.luasec.info"] = "lua/lunatls/luasec/info.lua",
    ["lunatls.luasec.https"] = "lua/lunatls/luasec/https.lua",
  },
  copy_directories = { "docs", "examples" },
}
test = {
  -- the in-tree build (build/lunatls/core.so) and busted, as `make test` runs it
  type = "command",
  command = "make all && busted",
}
