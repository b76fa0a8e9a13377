/* Memory errors at every allocation of a handshake: a Lua state whose
 * allocator fails the n-th allocation after arm(n), running fuzz/oom.lua,
 * which arms each call into lunatls (handshakes with keylog and servername
 * callbacks, a context with a password function) for n = 1, 2, ... until
 * the call completes without meeting the failure.
 *
 * Lua reports a failed allocation by raising; raised inside an OpenSSL
 * callback, that error would longjmp across OpenSSL's frames. Built with
 * ASan (make oom), this finds out: any memory error, and any leak left
 * when lua_close has collected everything, fails the run. */
#include "../src/lunatls.h"

#include <stdio.h>
#include <stdlib.h>

#include <lualib.h>

#ifndef FUZZ_DIR
#error "build with -DFUZZ_DIR=\"/path/to/fuzz\""
#endif

LUA_API int luaopen_lunatls_core(lua_State *L);

static long countdown = -1; /* allocations before the failure; -1: none armed */
static int failing;         /* the failure came: every allocation fails until disarmed */
static long failures;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    /* Only growth may fail (Lua assumes shrinking never does). Once failing,
     * keep failing: Lua retries a failed allocation after an emergency
     * collection, and one lucky retry would hide the error path. */
    if ((ptr == NULL || nsize > osize) && (failing || (countdown >= 0 && countdown-- == 0))) {
        if (!failing) failures++;
        failing = 1;
        return NULL;
    }
    return realloc(ptr, nsize);
}

/* arm(n): fail the n-th allocation from now (n >= 1); arm(): disarm.
 * Returns whether the previous arming fired. */
static int arm(lua_State *L) {
    static long seen;
    int fired = failures != seen;
    seen = failures;
    failing = 0;
    countdown = lua_isnoneornil(L, 1) ? -1 : (long)luaL_checkinteger(L, 1) - 1;
    lua_pushboolean(L, fired);
    return 1;
}

int main(void) {
    lua_State *L = lua_newstate(failing_alloc, NULL);
    int status;
    if (L == NULL) return 2;
    luaL_openlibs(L);
    luaL_requiref(L, "lunatls.core", luaopen_lunatls_core, 0);
    lua_pushcfunction(L, arm);
    lua_pushliteral(L, FUZZ_DIR "/../spec/fixtures/");
    status = luaL_loadfile(L, FUZZ_DIR "/oom.lua");
    if (status == LUA_OK) {
        lua_insert(L, -4);
        status = lua_pcall(L, 3, 0, 0);
    }
    if (status != LUA_OK) fprintf(stderr, "fuzz/oom.lua: %s\n", lua_tostring(L, -1));
    lua_close(L);
    printf("oom: %ld allocation failures injected\n", failures);
    return status == LUA_OK ? 0 : 1;
}
