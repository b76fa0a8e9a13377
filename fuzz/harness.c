/* libFuzzer harness: one Lua state with the lunatls C core linked in
 * (luaopen_lunatls_core from src/, built with the fuzzer's instrumentation),
 * running the Lua driver FUZZ_TARGET (fuzz/<target>.lua) on every input.
 *
 * The driver calls the module's API with the fuzz bytes as the peer's
 * records (client, server) or as a sequence of API calls (api), and checks
 * every result against the documented contract (fuzz/check.lua); an
 * invariant that fails, or any Lua error the driver did not expect, aborts
 * here so libFuzzer records the input as a crash.
 *
 * OpenSSL itself is not instrumented, so coverage of our C code alone would
 * leave the fuzzer nearly blind inside the handshake. The driver's probe()
 * adds two signals as libFuzzer extra counters: each handshake state
 * transition (SSL_get_state before/after a call) and each distinct error
 * message; an input that reaches a new state or a new error is kept. */
#include "../src/lunatls.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#ifndef FUZZ_DIR
#error "build with -DFUZZ_DIR=\"/path/to/fuzz\""
#endif
#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET=\"client\" (or server, api)"
#endif
#ifndef FIXTURES_DIR
#error "build with -DFIXTURES_DIR=\"/path/to/spec/fixtures/\""
#endif

LUA_API int luaopen_lunatls_core(lua_State *L);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EXTRA_COUNTERS (1 << 16)
__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t extra_counters[EXTRA_COUNTERS];

static lua_State *state;

static void bump(uint32_t h) {
    uint8_t *counter = &extra_counters[h % EXTRA_COUNTERS];
    if (*counter < 255) (*counter)++;
}

static uint32_t fnv1a(const char *s, size_t len, uint32_t h) {
    size_t i;
    for (i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* probe(conn[, message]): a counter for this (previous state, state) pair of
 * the connection, and one for the message. */
static int probe(lua_State *L) {
    static int previous;
    lunatls_Conn *c = (lunatls_Conn *)luaL_testudata(L, 1, LUNATLS_CONN);
    size_t len;
    const char *message = lua_tolstring(L, 2, &len);
    if (c != NULL && c->ssl != NULL) {
        int now = (int)SSL_get_state(c->ssl);
        bump(0x9e3779b9u * (uint32_t)(previous * 64 + now + 1));
        previous = now;
    }
    if (message != NULL) bump(fnv1a(message, len, 2166136261u));
    return 0;
}

static void die(lua_State *L, const char *where) {
    fprintf(stderr, "fuzz/%s.lua: %s: %s\n", FUZZ_TARGET, where, lua_tostring(L, -1));
    abort();
}

static int traceback(lua_State *L) {
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    lua_State *L = luaL_newstate();
    (void)argc;
    (void)argv;
    luaL_openlibs(L);
    luaL_requiref(L, "lunatls.core", luaopen_lunatls_core, 0);
    lua_pop(L, 1);
    lua_getglobal(L, "package");
    lua_pushliteral(L, FUZZ_DIR "/?.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_pushcfunction(L, traceback);
    if (luaL_loadfile(L, FUZZ_DIR "/" FUZZ_TARGET ".lua") != LUA_OK) die(L, "load");
    if (lua_pcall(L, 0, 1, 1) != LUA_OK) die(L, "run");
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "lunatls.core");
    lua_replace(L, -2);
    lua_pushliteral(L, FIXTURES_DIR);
    if (lua_pcall(L, 2, 1, 1) != LUA_OK) die(L, "setup");
    lua_setglobal(L, "fuzz_run"); /* setup(core, fixtures) -> run */
    lua_pop(L, 1);
    state = L;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = state;
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "fuzz_run");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushcfunction(L, probe);
    if (lua_pcall(L, 2, 0, 1) != LUA_OK) die(L, "input");
    lua_pop(L, 1);
    /* Everything the input made is garbage now: collect it, so a finalizer
     * that misbehaves does so on this input, not a later one. */
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
