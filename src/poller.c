/* lunatls.Poller: the kernel's readiness queue (Linux epoll), for the
 * bundled scheduler's "epoll" backend (lua/lunatls/scheduler.lua). A wait
 * through libuv made and closed a poll handle, ran a Lua callback and went
 * through luv's bookkeeping: ~45 K instructions per wait, a fifth of what a
 * stream's handshake over TCP added to OpenSSL's work (issue 11). Here a
 * wait is one epoll_ctl and its wake one slot of an epoll_wait.
 *
 * Registrations are one-shot (EPOLLONESHOT): once a descriptor is reported
 * it stays registered but silent until set again, so the scheduler never
 * removes it between waits, and a report nobody waits for any more comes at
 * most once. A descriptor closed while registered leaves the set by itself
 * (the kernel's rule); the scheduler finds such waits by its periodic scan. */
#include "lunatls.h"

#include <errno.h>
#include <string.h>

#ifdef __linux__
#include <sys/epoll.h>
#include <unistd.h>
#endif

/* Readiness bits, as set and as reported: what the scheduler's waits ask. */
#define POLLER_READ 1
#define POLLER_WRITE 2

/* Reports taken from the kernel per wait(): more wait for the next one. */
#define POLLER_BATCH 256

typedef struct {
    int epfd; /* -1 once closed */
} lunatls_Poller;

/* The method's self, open: the class check every method makes
 * (lunatls_checkclass); closed is its own test, as the struct holds a
 * descriptor, not the pointer lunatls_checkself looks at. */
static lunatls_Poller *check_poller(lua_State *L) {
    lunatls_Poller *p = (lunatls_Poller *)lunatls_checkclass(L, 1, UPV_METATABLE, LUNATLS_POLLER);
    if (p->epfd < 0) luaL_error(L, "attempt to use a closed %s", LUNATLS_POLLER);
    return p;
}

static int push_errno(lua_State *L, const char *what, int err) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(err));
    lua_pushstring(L, err == EBADF ? "closed" : "syscall");
    return 3;
}

#ifdef __linux__

/* tls.core.new_poller() -> Poller, or nil, message, "syscall" (no
 * descriptor left for it) */
static int poller_new(lua_State *L) {
    lunatls_Poller *p = (lunatls_Poller *)lua_newuserdatauv(L, sizeof *p, 0);
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) return push_errno(L, "epoll_create1", errno);
    luaL_setmetatable(L, LUNATLS_POLLER);
    return 1;
}

/* poller:set(fd, bits[, known]) -> true, or nil, message, code ("closed":
 * fd is not an open descriptor). Arms fd, once, for bits (POLLER_READ |
 * POLLER_WRITE); known: it was set before (tried as a change first, then
 * as a new registration, as the kernel may have dropped it on a close). */
static int poller_set(lua_State *L) {
    lunatls_Poller *p = check_poller(L);
    lua_Integer fd = luaL_checkinteger(L, 2);
    lua_Integer bits = luaL_checkinteger(L, 3);
    int known = lua_toboolean(L, 4);
    struct epoll_event ev;
    int first = known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, 2, "not a descriptor");
    luaL_argcheck(L, bits >= 1 && bits <= (POLLER_READ | POLLER_WRITE), 3, "must be 1, 2 or 3");
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLONESHOT | ((bits & POLLER_READ) ? EPOLLIN : 0) |
                ((bits & POLLER_WRITE) ? EPOLLOUT : 0);
    ev.data.fd = (int)fd;
    if (epoll_ctl(p->epfd, first, (int)fd, &ev) != 0) {
        int retry = known ? (errno == ENOENT ? EPOLL_CTL_ADD : -1) : (errno == EEXIST ? EPOLL_CTL_MOD : -1);
        if (retry < 0 || epoll_ctl(p->epfd, retry, (int)fd, &ev) != 0) {
            return push_errno(L, "epoll_ctl", errno);
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* poller:wait(milliseconds, out) -> n: waits at most milliseconds (0: only
 * looks) for armed descriptors to be ready; out[2k - 1], out[2k] = the k-th
 * descriptor and its readiness bits (an error or a hang-up reads as both,
 * so that every waiter tries and finds out). Interrupted by a signal: 0. */
static int poller_wait(lua_State *L) {
    lunatls_Poller *p = check_poller(L);
    lua_Integer ms = luaL_checkinteger(L, 2);
    struct epoll_event events[POLLER_BATCH];
    int n, k;
    luaL_checktype(L, 3, LUA_TTABLE);
    n = epoll_wait(p->epfd, events, POLLER_BATCH, ms < 0 ? 0 : ms > 0x7fffffff ? 0x7fffffff : (int)ms);
    if (n < 0 && errno != EINTR) return push_errno(L, "epoll_wait", errno);
    if (n < 0) n = 0;
    for (k = 0; k < n; k++) {
        uint32_t e = events[k].events;
        int bits = ((e & EPOLLIN) ? POLLER_READ : 0) | ((e & EPOLLOUT) ? POLLER_WRITE : 0);
        if (e & (EPOLLERR | EPOLLHUP)) bits = POLLER_READ | POLLER_WRITE;
        lua_pushinteger(L, events[k].data.fd);
        lua_rawseti(L, 3, 2 * k + 1);
        lua_pushinteger(L, bits);
        lua_rawseti(L, 3, 2 * k + 2);
    }
    lua_pushinteger(L, n);
    return 1;
}

#else /* no epoll: the scheduler takes another backend */

static int poller_new(lua_State *L) {
    lua_pushnil(L);
    lua_pushliteral(L, "no epoll on this system");
    lua_pushliteral(L, "unsupported");
    return 3;
}

static int poller_set(lua_State *L) {
    check_poller(L);
    return push_errno(L, "epoll_ctl", ENOSYS);
}

static int poller_wait(lua_State *L) {
    check_poller(L);
    return push_errno(L, "epoll_wait", ENOSYS);
}

#endif

/* poller:close(): gives its descriptor back; idempotent (also __gc) */
static int poller_close(lua_State *L) {
    lunatls_Poller *p = (lunatls_Poller *)luaL_checkudata(L, 1, LUNATLS_POLLER);
#ifdef __linux__
    if (p->epfd >= 0) close(p->epfd);
#endif
    p->epfd = -1;
    return 0;
}

static int poller_describe(lua_State *L) {
    lunatls_Poller *p = (lunatls_Poller *)luaL_checkudata(L, 1, LUNATLS_POLLER);
    if (p->epfd < 0) return lunatls_tostring_closed(L, LUNATLS_POLLER);
    lua_pushfstring(L, "%s: %p", LUNATLS_POLLER, (void *)p);
    return 1;
}

void lunatls_open_poller(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"set", poller_set},
        {"wait", poller_wait},
        {"close", poller_close},
        {NULL, NULL},
    };
    static const luaL_Reg metamethods[] = {
        {"__gc", poller_close},
        {"__close", poller_close},
        {"__tostring", poller_describe},
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"new_poller", poller_new},
        {NULL, NULL},
    };
    lunatls_newclass(L, LUNATLS_POLLER, methods, metamethods);
    luaL_setfuncs(L, functions, 0);
}
