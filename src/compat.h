/* Build guards: Lua 5.4 and the OpenSSL 3.0 API with nothing deprecated. */
#ifndef LUNATLS_COMPAT_H
#define LUNATLS_COMPAT_H

#ifndef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 30000
#endif
#ifndef OPENSSL_NO_DEPRECATED
#define OPENSSL_NO_DEPRECATED
#endif

#include <openssl/opensslv.h>
#include <lua.h>

#if OPENSSL_VERSION_MAJOR < 3
#error "lunatls needs OpenSSL 3.0 or later"
#endif
#if LUA_VERSION_NUM < 504
#error "lunatls needs Lua 5.4 or later"
#endif

#endif
