/* Reading an options table (new_context's and new_conn's): the one place
 * where lunatls reads a table the caller gave it.
 *
 * The caller's table may be a proxy whose __index returns a fresh string on
 * every read, so a C pointer to a value read from it is valid only while
 * that value is anchored. lunatls_options_snapshot reads each known option
 * once (metamethods run then, and only then) into a plain table that
 * replaces the argument on the stack; every getter below reads that
 * snapshot with raw access, and the strings it returns stay valid for as
 * long as the snapshot is on the stack, i.e. for the whole call. Lists
 * (alpn, verify_flags) are snapshotted the same way by lunatls_opt_list. */
#include "lunatls.h"

#include <string.h>

#define ECHO_MAX 64 /* at most this many bytes of a caller's value in a message */

/* Pushes s as a message shows a caller's value: its first ECHO_MAX bytes
 * and its length when it is longer, a NUL or control byte as \ddd, in
 * quotes when quote is set. */
static const char *push_shown(lua_State *L, const char *s, size_t len, int quote) {
    luaL_Buffer b;
    size_t i, shown = len > ECHO_MAX ? ECHO_MAX : len;
    luaL_buffinit(L, &b);
    if (quote) luaL_addchar(&b, '\'');
    for (i = 0; i < shown; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 32 || ch == 127) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\%d", ch);
            luaL_addstring(&b, esc);
        } else {
            luaL_addchar(&b, (char)ch);
        }
    }
    if (quote) luaL_addchar(&b, '\'');
    if (shown < len) {
        char more[48];
        snprintf(more, sizeof more, "... (%zu bytes)", len);
        luaL_addstring(&b, more);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

const char *lunatls_push_quoted(lua_State *L, const char *s, size_t len) {
    return push_shown(L, s, len, 1);
}

const char *lunatls_push_bounded(lua_State *L, const char *s) {
    return push_shown(L, s, strlen(s), 0);
}

/* What a value is called in a type error: an object by its __name, as
 * luaL_typeerror says it. */
static const char *type_name(lua_State *L, int idx) {
    int t = luaL_getmetafield(L, idx, "__name");
    if (t == LUA_TSTRING) return lua_tostring(L, -1);
    if (t != LUA_TNIL) lua_pop(L, 1);
    return luaL_typename(L, idx);
}

/* Raises "bad argument #arg (option 'name': <expected> expected, got <type>)"
 * for the value on the stack top. */
int lunatls_opt_type_error(lua_State *L, int arg, const char *name, const char *expected) {
    int value = lua_gettop(L);
    const char *got = type_name(L, value);
    return luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': %s expected, got %s", name,
                                                 expected, got));
}

/* Is the string at idx one of known? By length: "mode\0x" is not "mode". */
static int is_known(lua_State *L, int idx, const char *const known[]) {
    size_t len;
    const char *key;
    int i;
    if (lua_type(L, idx) != LUA_TSTRING) return 0;
    key = lua_tolstring(L, idx, &len);
    for (i = 0; known[i] != NULL; i++)
        if (strlen(known[i]) == len && memcmp(known[i], key, len) == 0) return 1;
    return 0;
}

/* Raises for a key of the caller's table that is not in known; copies the
 * pairs into the table on the stack top when copy is set. */
static void check_known(lua_State *L, int arg, const char *const known[], int copy) {
    lua_pushnil(L);
    while (lua_next(L, arg) != 0) {
        if (!is_known(L, -2, known)) {
            size_t len;
            const char *key = luaL_tolstring(L, -2, &len);
            luaL_argerror(L, arg, lua_pushfstring(L, "unknown option %s",
                                                  lunatls_push_quoted(L, key, len)));
        }
        if (copy) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4); /* into the snapshot; the key stays for lua_next */
        } else {
            lua_pop(L, 1);
        }
    }
}

/* A plain table (no metatable) holds all it says in its own pairs: they are
 * the snapshot (no read of every known name: ~2 K instructions less per
 * new_conn). Through a metatable, every known name is read once. */
void lunatls_options_snapshot(lua_State *L, int arg, const char *const known[]) {
    int i;
    luaL_checktype(L, arg, LUA_TTABLE);
    if (!lua_getmetatable(L, arg)) {
        lua_createtable(L, 0, 4);
        check_known(L, arg, known, 1);
    } else {
        lua_pop(L, 1);
        check_known(L, arg, known, 0);
        lua_newtable(L);
        for (i = 0; known[i] != NULL; i++) {
            lua_getfield(L, arg, known[i]); /* the caller's metamethods run here */
            lua_setfield(L, -2, known[i]);
        }
    }
    lua_replace(L, arg);
}

/* Pushes option `name` of the snapshot at arg (nil when absent: the caller
 * pops it either way); raises unless it has type `type`. Returns whether
 * it is present. */
int lunatls_opt_push(lua_State *L, int arg, const char *name, int type, const char *expected) {
    int got;
    lua_pushstring(L, name);
    got = lua_rawget(L, arg);
    if (got != LUA_TNIL && got != type) lunatls_opt_type_error(L, arg, name, expected);
    return got != LUA_TNIL;
}

/* The string value (raw, anchored in the snapshot), or NULL when absent. */
static const char *opt_lstring(lua_State *L, int arg, const char *name, size_t *len) {
    const char *s = NULL;
    size_t n = 0;
    if (lunatls_opt_push(L, arg, name, LUA_TSTRING, "string")) s = lua_tolstring(L, -1, &n);
    lua_pop(L, 1);
    if (len != NULL) *len = n;
    return s;
}

const char *lunatls_opt_bytes(lua_State *L, int arg, const char *name, size_t *len) {
    return opt_lstring(L, arg, name, len);
}

/* Argument arg as text for OpenSSL, which reads a C string: def when absent,
 * and a raise when a NUL byte would cut it short. */
const char *lunatls_opttext(lua_State *L, int arg, const char *def) {
    size_t len;
    const char *s = luaL_optlstring(L, arg, def, &len);
    if (s != NULL && strlen(s) != len) luaL_argerror(L, arg, "contains a NUL byte");
    return s;
}

/* Text that OpenSSL will read as a C string (a path, a name, a list): a NUL
 * byte would silently cut it short, so it is refused. */
const char *lunatls_opt_string(lua_State *L, int arg, const char *name, size_t *len) {
    size_t n;
    const char *s = opt_lstring(L, arg, name, &n);
    if (s != NULL && strlen(s) != n)
        luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' contains a NUL byte", name));
    if (len != NULL) *len = n;
    return s;
}

int lunatls_opt_boolean(lua_State *L, int arg, const char *name, int def) {
    int v = def;
    if (lunatls_opt_push(L, arg, name, LUA_TBOOLEAN, "boolean")) v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Pushes "'a', 'b' or 'c'" */
static const char *push_choices(lua_State *L, const char *const choices[]) {
    luaL_Buffer b;
    int i;
    luaL_buffinit(L, &b);
    for (i = 0; choices[i] != NULL; i++) {
        if (i > 0) luaL_addstring(&b, choices[i + 1] == NULL ? " or " : ", ");
        luaL_addchar(&b, '\'');
        luaL_addstring(&b, choices[i]);
        luaL_addchar(&b, '\'');
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* The index of the value s (len bytes) of option `name` in choices; raises
 * naming the valid ones otherwise. */
int lunatls_choice(lua_State *L, int arg, const char *name, const char *s, size_t len,
                   const char *const choices[]) {
    int i;
    for (i = 0; choices[i] != NULL; i++)
        if (strlen(choices[i]) == len && memcmp(choices[i], s, len) == 0) return i;
    lunatls_push_quoted(L, s, len);
    push_choices(L, choices);
    return luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': invalid value %s (expected %s)",
                                                 name, lua_tostring(L, -2), lua_tostring(L, -1)));
}

int lunatls_opt_choice(lua_State *L, int arg, const char *name, const char *def,
                       const char *const choices[]) {
    size_t len;
    const char *s = opt_lstring(L, arg, name, &len);
    if (s == NULL) {
        if (def == NULL)
            return luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' is required", name));
        s = def;
        len = strlen(def);
    }
    return lunatls_choice(L, arg, name, s, len, choices);
}

/* Pushes a plain copy of the list option (strings only, read once through
 * the caller's __len and __index), or nothing when absent. Returns its
 * length, or -1 when absent. */
lua_Integer lunatls_opt_list(lua_State *L, int arg, const char *name) {
    lua_Integer i, n;
    int list;
    if (!lunatls_opt_push(L, arg, name, LUA_TTABLE, "list of strings")) {
        lua_pop(L, 1);
        return -1;
    }
    list = lua_gettop(L);
    n = luaL_len(L, list);
    if (n < 0 || n > 65535)
        luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': too many entries", name));
    lua_createtable(L, (int)n, 0);
    for (i = 1; i <= n; i++) {
        if (lua_geti(L, list, i) != LUA_TSTRING)
            lunatls_opt_type_error(L, arg, name, "list of strings");
        lua_rawseti(L, -2, i);
    }
    lua_replace(L, list);
    return n;
}

/* Pushes option `name` as a plain list of strings, a string being a list
 * of one. Returns its length, or -1 (nothing pushed) when absent. */
lua_Integer lunatls_opt_strings(lua_State *L, int arg, const char *name) {
    lua_pushstring(L, name);
    if (lua_rawget(L, arg) == LUA_TSTRING) {
        lua_createtable(L, 1, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
        return 1;
    }
    if (!lua_isnil(L, -1) && !lua_istable(L, -1))
        lunatls_opt_type_error(L, arg, name, "string or list of strings");
    lua_pop(L, 1);
    return lunatls_opt_list(L, arg, name);
}
