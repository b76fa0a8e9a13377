/* luaopen_lunatls_core: the module table, and helpers every object type uses. */
#include "lunatls.h"

#include <openssl/err.h>

#define LUNATLS_VERSION "0.1.0"

/* Every object's struct starts with its OpenSSL pointer, NULL once closed. */
void *lunatls_checkopen(lua_State *L, int idx, const char *tname) {
    void **p = (void **)luaL_checkudata(L, idx, tname);
    if (*p == NULL) luaL_error(L, "attempt to use a closed %s", tname);
    return p;
}

int lunatls_tostring_closed(lua_State *L, const char *tname) {
    lua_pushfstring(L, "%s (closed)", tname);
    return 1;
}

/* Creates the metatable tname with methods in __index, and leaves the stack as
 * it was. */
void lunatls_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                      const luaL_Reg *metamethods) {
    luaL_newmetatable(L, tname);
    luaL_setfuncs(L, metamethods, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

LUA_API int luaopen_lunatls_core(lua_State *L);

__attribute__((visibility("default"))) LUA_API int luaopen_lunatls_core(lua_State *L) {
    OPENSSL_init_ssl(0, NULL);
    lua_newtable(L);
    lunatls_open_context(L);
    lunatls_open_bio(L);
    lunatls_open_conn(L);
    lunatls_open_certificate(L);
    lunatls_open_session(L);
    lua_pushliteral(L, LUNATLS_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
    lua_setfield(L, -2, "OPENSSL_VERSION");
    return 1;
}
