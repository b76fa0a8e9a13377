/* lunatls.Buffer: a fixed block of memory that conn:read_into fills and
 * conn:write / bio:write send from, so that a program which forwards or
 * counts what it reads makes no Lua string per read (issue 11: the copy
 * into a fresh string and its collection are most of what the core adds to
 * a bulk read). Its bytes live inside the userdata: nothing to free, and
 * the capacity never changes, so a pointer into it stays valid for as long
 * as the Buffer is on the stack. */
#include "lunatls.h"

#include <string.h>

/* Large enough for any use of a reusable read buffer; small enough that a
 * wrong argument fails clearly instead of asking for gigabytes. */
#define BUFFER_MAX (1 << 30)

lunatls_Buffer *lunatls_testbuffer(lua_State *L, int idx) {
    return (lunatls_Buffer *)lunatls_testclass(L, idx, UPV_BUFFER_CLASS, LUNATLS_BUFFER);
}

lunatls_Buffer *lunatls_checkbuffer(lua_State *L, int idx) {
    return (lunatls_Buffer *)lunatls_checkclass(L, idx, UPV_BUFFER_CLASS, LUNATLS_BUFFER);
}

/* tls.new_buffer(capacity) -> an empty Buffer of capacity bytes */
static int buffer_new(lua_State *L) {
    lua_Integer capacity = luaL_checkinteger(L, 1);
    lunatls_Buffer *b;
    luaL_argcheck(L, capacity > 0 && capacity <= BUFFER_MAX, 1,
                  "capacity must be between 1 and 1073741824");
    b = (lunatls_Buffer *)lua_newuserdatauv(L, sizeof *b + (size_t)capacity, 0);
    b->bytes = (char *)(b + 1);
    b->len = 0;
    b->capacity = (size_t)capacity;
    luaL_setmetatable(L, LUNATLS_BUFFER);
    return 1;
}

/* buf:tostring([i[, j]]) -> the bytes it holds (string.sub's positions) */
static int buffer_tostring(lua_State *L) {
    size_t len;
    const char *s;
    lunatls_checkbuffer(L, 1); /* self must be a Buffer: check_range takes strings too */
    s = lunatls_check_range(L, 1, &len);
    lua_pushlstring(L, s, len);
    return 1;
}

static int buffer_len(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)lunatls_checkbuffer(L, 1)->len);
    return 1;
}

static int buffer_capacity(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)lunatls_checkbuffer(L, 1)->capacity);
    return 1;
}

/* buf:clear(): holds nothing (its memory is kept) */
static int buffer_clear(lua_State *L) {
    lunatls_checkbuffer(L, 1)->len = 0;
    return 0;
}

static int buffer_describe(lua_State *L) {
    lunatls_Buffer *b = lunatls_checkbuffer(L, 1);
    lua_pushfstring(L, "%s: %p (%I of %I bytes)", LUNATLS_BUFFER, (void *)b, (lua_Integer)b->len,
                    (lua_Integer)b->capacity);
    return 1;
}

void lunatls_open_buffer(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"tostring", buffer_tostring},
        {"len", buffer_len},
        {"capacity", buffer_capacity},
        {"clear", buffer_clear},
        {NULL, NULL},
    };
    static const luaL_Reg metamethods[] = {
        {"__len", buffer_len},
        {"__tostring", buffer_describe},
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"new_buffer", buffer_new},
        {NULL, NULL},
    };
    lunatls_newclass(L, LUNATLS_BUFFER, methods, metamethods);
    luaL_setfuncs(L, functions, 0);
}
