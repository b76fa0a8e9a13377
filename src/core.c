/* luaopen_lunatls_core: the module table, and helpers every object type uses. */
#include "lunatls.h"

#include <openssl/err.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

/* The release, from the VERSION file: the Makefile and the rockspec pass it
 * with -DLUNATLS_VERSION; a build that does not is a development one. */
#ifndef LUNATLS_VERSION
#define LUNATLS_VERSION "scm"
#endif

/* Every object's struct starts with its OpenSSL pointer, NULL once closed. */
void *lunatls_checkopen(lua_State *L, int idx, const char *tname) {
    void **p = (void **)luaL_checkudata(L, idx, tname);
    if (*p == NULL) luaL_error(L, "attempt to use a closed %s", tname);
    return p;
}

/* Argument idx if it is a userdata of class tname, else NULL: one pointer
 * comparison with the class's metatable, which the running method carries
 * as upvalue upv (lunatls_newclass), instead of luaL_testudata's registry
 * lookup by name; a function without that upvalue (lua_upvalueindex past
 * its last one is valid and holds none) goes the slow way. Methods run
 * this on every call. */
void *lunatls_testclass(lua_State *L, int idx, int upv, const char *tname) {
    void *p = lua_touserdata(L, idx);
    if (p != NULL && lua_getmetatable(L, idx)) {
        int same = lua_rawequal(L, -1, lua_upvalueindex(upv));
        lua_pop(L, 1);
        if (same) return p;
    }
    return luaL_testudata(L, idx, tname);
}

/* lunatls_testclass, raising luaL_checkudata's usual message otherwise. */
void *lunatls_checkclass(lua_State *L, int idx, int upv, const char *tname) {
    void *p = lunatls_testclass(L, idx, upv, tname);
    return p != NULL ? p : luaL_checkudata(L, idx, tname);
}

/* Argument idx, an open object of class tname (lunatls_checkclass), for
 * every object whose struct starts with its OpenSSL pointer. */
void *lunatls_checkopen_class(lua_State *L, int idx, int upv, const char *tname) {
    void **p = (void **)lunatls_checkclass(L, idx, upv, tname);
    if (*p == NULL) luaL_error(L, "attempt to use a closed %s", tname);
    return p;
}

/* The self (argument 1) of a method, open. */
void *lunatls_checkself(lua_State *L, const char *tname) {
    return lunatls_checkopen_class(L, 1, UPV_METATABLE, tname);
}

/* Empties the thread's OpenSSL error queue, so that SSL_get_error and
 * errors.c see only what the next call queues. ERR_clear_error wipes every
 * slot of the queue (~400 instructions); peeking first costs a fifth of
 * that when the queue is already empty, as it nearly always is. */
void lunatls_clear_errors(void) {
    if (ERR_peek_error() != 0) ERR_clear_error();
}

static const char *const status_words[] = {
    [UPV_DONE] = "done",
    [UPV_WANT_READ] = "want_read",
    [UPV_WANT_WRITE] = "want_write",
    [UPV_CLOSED] = "closed",
    [UPV_WANT_CERTIFICATE] = "want_certificate",
};

/* Pushes a status word (UPV_DONE...) from the running method's upvalues; by
 * name when called from a function that has none. */
void lunatls_pushword(lua_State *L, int word) {
    lua_pushvalue(L, lua_upvalueindex(word));
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushstring(L, status_words[word]);
    }
}

static int push_copy_protected(lua_State *L) {
    lua_pushlstring(L, (const char *)lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

/* Pushes a copy of the len bytes at s without raising: returns 1, or 0 with
 * the error (out of memory) pushed instead. For text in OpenSSL memory that
 * must be freed whatever happens: copy, free, then lua_error if it failed. */
int lunatls_push_copy(lua_State *L, const char *s, size_t len) {
    lua_pushcfunction(L, push_copy_protected);
    lua_pushlightuserdata(L, (void *)s);
    lua_pushinteger(L, (lua_Integer)len);
    return lua_pcall(L, 2, 1, 0) == LUA_OK;
}

/* The bytes at arg (a string, or what a Buffer holds), or their part from i
 * (arg + 1) to j (arg + 2) as string.sub would take it (negative positions
 * count from the end), without copying: a write of the rest of a string
 * after a partial write costs nothing. *len is the part's length. */
const char *lunatls_check_range(lua_State *L, int arg, size_t *len) {
    size_t size;
    const char *s;
    lunatls_Buffer *b;
    lua_Integer i, j, n;
    int type = lua_type(L, arg);
    if (type == LUA_TUSERDATA && (b = lunatls_testbuffer(L, arg)) != NULL) {
        s = b->bytes;
        size = b->len;
    } else if (type == LUA_TSTRING || type == LUA_TNUMBER) {
        s = lua_tolstring(L, arg, &size);
    } else {
        luaL_typeerror(L, arg, "string or lunatls.Buffer");
        return NULL;
    }
    if (lua_gettop(L) == arg) { /* no i, j: the whole, the usual call (a write per message) */
        *len = size;
        return s;
    }
    i = luaL_optinteger(L, arg + 1, 1);
    j = luaL_optinteger(L, arg + 2, -1);
    n = (lua_Integer)size;
    if (i < 0) i = i < -n ? 1 : n + i + 1;
    else if (i == 0) i = 1;
    if (j < 0) j = n + j + 1;
    else if (j > n) j = n;
    *len = i > j ? 0 : (size_t)(j - i + 1);
    return *len == 0 ? s : s + (i - 1);
}

int lunatls_tostring_closed(lua_State *L, const char *tname) {
    lua_pushfstring(L, "%s (closed)", tname);
    return 1;
}

/* Creates the metatable tname with methods in __index, and leaves the stack as
 * it was. Each method gets the UPV_* upvalues. */
void lunatls_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                      const luaL_Reg *metamethods) {
    int word;
    luaL_newmetatable(L, tname);
    luaL_setfuncs(L, metamethods, 0);
    lua_newtable(L);
    lua_pushvalue(L, -2);
    for (word = UPV_DONE; word <= UPV_WANT_CERTIFICATE; word++) lua_pushstring(L, status_words[word]);
    luaL_getmetatable(L, LUNATLS_BIO);
    luaL_getmetatable(L, LUNATLS_BUFFER);
    luaL_setfuncs(L, methods, UPV_COUNT);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* release_memory(): after a burst of connections (an attack, a peak), gives
 * back what they left behind: two full collections (the first finalizes the
 * objects no one holds, but Lua frees a finalized object, and what it
 * refers to, only in the cycle after its finalizer ran), the pair's cached
 * rings, then glibc's free pages inside its heap, which it otherwise keeps
 * for reuse for the life of the process (only the top of the heap is
 * trimmed by itself). Returns true if the allocator gave memory back to
 * the system. */
static int release_memory(lua_State *L) {
    int returned = 0;
    lua_gc(L, LUA_GCCOLLECT);
    lua_gc(L, LUA_GCCOLLECT);
    lunatls_pair_release_cache(L);
#ifdef __GLIBC__
    returned = malloc_trim(0);
#endif
    lua_pushboolean(L, returned);
    return 1;
}

LUA_API int luaopen_lunatls_core(lua_State *L);

__attribute__((visibility("default"))) LUA_API int luaopen_lunatls_core(lua_State *L) {
    OPENSSL_init_ssl(0, NULL);
    lunatls_open_pair(L);
    lunatls_open_socket(L);
    /* the classes methods take as arguments, first: lunatls_newclass gives
     * every method their metatables as upvalues */
    luaL_newmetatable(L, LUNATLS_BIO);
    luaL_newmetatable(L, LUNATLS_BUFFER);
    lua_pop(L, 2);
    lua_newtable(L);
    lunatls_open_context(L);
    lunatls_open_bio(L);
    lunatls_open_conn(L);
    lunatls_open_certificate(L);
    lunatls_open_session(L);
    lunatls_open_buffer(L);
    lunatls_open_poller(L);
    lua_pushcfunction(L, release_memory);
    lua_setfield(L, -2, "release_memory");
    lua_pushliteral(L, LUNATLS_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
    lua_setfield(L, -2, "OPENSSL_VERSION");
    return 1;
}
