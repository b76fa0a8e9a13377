/* Running Lua callbacks from inside OpenSSL.
 *
 * OpenSSL calls our callbacks from inside SSL_do_handshake and friends,
 * where nothing may raise: a longjmp across OpenSSL's frames would skip its
 * cleanup and leave the Conn marked busy for good. Even pushing a string
 * can raise (out of memory), so a callback pushes only what cannot fail (a
 * light C function, the Conn, a light userdata) and lua_pcalls a C function
 * that does the rest; an error is kept in CONN_UV_ERROR, and the method
 * that called OpenSSL raises it once OpenSSL has returned (conn.c,
 * end_call), and marks the connection failed. */
#include "lunatls.h"

/* The Conn of ssl while one of its methods runs, else NULL (then the
 * callback must refuse: there is no Lua thread to run it on). */
lunatls_Conn *lunatls_callback_conn(const SSL *ssl) {
    lunatls_Conn *c = (lunatls_Conn *)SSL_get_app_data(ssl);
    /* Methods keep the Conn at stack index 1; be sure before using it. */
    if (c == NULL || c->L == NULL || c->callback_failed || lua_touserdata(c->L, 1) != c)
        return NULL;
    return c;
}

/* Calls f(conn, arg) protected, on the thread of the running method, with
 * no results; on an error, keeps it for end_call. Returns 1 on success. */
int lunatls_call_protected(lunatls_Conn *c, lua_CFunction f, void *arg) {
    lua_State *L = c->L;
    int top = lua_gettop(L), ok;
    if (!lua_checkstack(L, 3)) { /* cannot even report it: refuse the callback */
        c->callback_failed = 1;
        return 0;
    }
    lua_pushcfunction(L, f);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, arg);
    ok = lua_pcall(L, 2, 0, 0) == LUA_OK;
    if (!ok) {
        c->callback_failed = 1;
        lua_setiuservalue(L, 1, CONN_UV_ERROR);
    }
    lua_settop(L, top);
    return ok;
}

/* Pushes the Lua callback `name` of the context the connection follows: the
 * one the servername callback chose, else the one it was made from. The
 * Conn is at index 1. Returns whether it is a function. */
int lunatls_push_callback(lua_State *L, const char *name) {
    if (lua_getiuservalue(L, 1, CONN_UV_SNI_CONTEXT) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_getiuservalue(L, 1, CONN_UV_CONTEXT);
    }
    lua_getiuservalue(L, -1, CTX_UV_CALLBACKS);
    lua_getfield(L, -1, name);
    lua_replace(L, -3);
    lua_pop(L, 1);
    return lua_isfunction(L, -1);
}

/* keylog(line), protected: 1 the Conn, 2 the line (light userdata). */
static int keylog_protected(lua_State *L) {
    const char *line = (const char *)lua_touserdata(L, 2);
    if (lunatls_push_callback(L, "keylog")) {
        lua_pushstring(L, line);
        lua_call(L, 1, 0);
    }
    return 0;
}

void lunatls_keylog_callback(const SSL *ssl, const char *line) {
    lunatls_Conn *c = lunatls_callback_conn(ssl);
    if (c != NULL) lunatls_call_protected(c, keylog_protected, (void *)line);
}
