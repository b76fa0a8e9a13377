/* The BIO of a connection in fd mode (new_conn{fd = ...}): OpenSSL's socket
 * BIO (BIO_s_socket) writes with write(2), and a write to a socket whose
 * peer has gone raises SIGPIPE, whose default action ends the process.
 * Nothing a peer does may do that: this BIO sends with MSG_NOSIGNAL, so the
 * write fails with EPIPE instead, reported as nil, "...: Broken pipe",
 * "syscall". (LuaSocket ignores SIGPIPE for the whole process when it loads,
 * which hid this from the stream layer; a program using the core with luv,
 * cqueues or descriptors of its own has no such luck.)
 *
 * Otherwise it is the socket BIO: reads with recv(2), the socket's own
 * blocking mode, retry on the non-fatal errors (BIO_sock_non_fatal_error),
 * BIO_get_fd, and BIO_CLOSE closes the descriptor when the BIO is freed
 * (option close_fd). The descriptor is the BIO's data. */
#include "lunatls.h"

#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>


static int fd_of(BIO *bio) {
    return BIO_get_init(bio) ? (int)(intptr_t)BIO_get_data(bio) : -1;
}

/* After a system call that moved nothing: whether to try again later. */
static void note_failure(BIO *bio, int ret, int retry_flag) {
    if (ret < 0 && BIO_sock_non_fatal_error(errno)) BIO_set_flags(bio, retry_flag | BIO_FLAGS_SHOULD_RETRY);
    else if (ret == 0) BIO_set_flags(bio, BIO_FLAGS_IN_EOF);
}

static int socket_read(BIO *bio, char *out, int len) {
    ssize_t n;
    BIO_clear_retry_flags(bio);
    if (out == NULL || len <= 0) return 0;
    errno = 0;
    n = recv(fd_of(bio), out, (size_t)len, 0);
    if (n <= 0) note_failure(bio, (int)n, BIO_FLAGS_READ);
    return (int)n;
}

static int socket_write(BIO *bio, const char *in, int len) {
    ssize_t n;
    BIO_clear_retry_flags(bio);
    if (len <= 0) return 0;
    errno = 0;
    n = send(fd_of(bio), in, (size_t)len, MSG_NOSIGNAL);
    if (n < 0) note_failure(bio, (int)n, BIO_FLAGS_WRITE);
    return (int)n;
}

static long socket_ctrl(BIO *bio, int cmd, long num, void *ptr) {
    switch (cmd) {
    case BIO_C_SET_FD: /* BIO_set_fd(bio, fd, close_flag) */
        BIO_set_data(bio, (void *)(intptr_t)*(int *)ptr);
        BIO_set_shutdown(bio, (int)num);
        BIO_set_init(bio, 1);
        return 1;
    case BIO_C_GET_FD:
        if (!BIO_get_init(bio)) return -1;
        if (ptr != NULL) *(int *)ptr = fd_of(bio);
        return fd_of(bio);
    case BIO_CTRL_GET_CLOSE:
        return BIO_get_shutdown(bio);
    case BIO_CTRL_SET_CLOSE:
        BIO_set_shutdown(bio, (int)num);
        return 1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0;
    case BIO_CTRL_DUP:
    case BIO_CTRL_FLUSH:
        return 1;
    default: /* pending bytes, kTLS, ...: none here */
        return 0;
    }
}

static int socket_destroy(BIO *bio) {
    if (BIO_get_init(bio) && BIO_get_shutdown(bio)) close(fd_of(bio));
    BIO_set_init(bio, 0);
    return 1;
}

#define METHOD_KEY "lunatls.socket_method"

static BIO_METHOD *make_method(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "lunatls socket");
    if (m == NULL || !BIO_meth_set_write(m, socket_write) || !BIO_meth_set_read(m, socket_read) ||
        !BIO_meth_set_ctrl(m, socket_ctrl) || !BIO_meth_set_destroy(m, socket_destroy)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

static int method_gc(lua_State *L) {
    BIO_METHOD **slot = (BIO_METHOD **)lua_touserdata(L, 1);
    BIO_meth_free(*slot);
    *slot = NULL;
    return 0;
}

/* The method lives in the registry, made at luaopen and freed when the state
 * closes, after every connection (finalizers run newest first). Once per
 * state, as pair.c's: a module loaded again keeps the first. */
void lunatls_open_socket(lua_State *L) {
    BIO_METHOD **slot;
    if (lua_getfield(L, LUA_REGISTRYINDEX, METHOD_KEY) == LUA_TUSERDATA) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    slot = (BIO_METHOD **)lua_newuserdatauv(L, sizeof *slot, 0);
    *slot = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, method_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    if ((*slot = make_method()) == NULL) luaL_error(L, "lunatls: out of memory");
    lua_setfield(L, LUA_REGISTRYINDEX, METHOD_KEY);
}

/* A BIO on socket fd that leaves it open when freed (BIO_set_close turns
 * that round), or NULL (out of memory). */
BIO *lunatls_new_socket_bio(lua_State *L, int fd) {
    BIO_METHOD **slot;
    BIO *bio;
    lua_getfield(L, LUA_REGISTRYINDEX, METHOD_KEY);
    slot = (BIO_METHOD **)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (slot == NULL || *slot == NULL || (bio = BIO_new(*slot)) == NULL) return NULL;
    BIO_set_fd(bio, fd, BIO_NOCLOSE);
    return bio;
}
