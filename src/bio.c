/* lunatls.BIO: one end of a BIO pair (pair.c: OpenSSL's semantics, rings
 * allocated only while they hold bytes).
 *
 * Bytes written into one end are read out of the other, through a buffer of
 * fixed size in each direction. A connection holds one end; the application
 * holds the other (the "network end") and moves bytes between it and the
 * real transport. A full buffer takes fewer bytes than offered and says how
 * many: nothing is dropped. */
#include "lunatls.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

/* The largest TLS record plus headroom: one whole record fits. */
#define DEFAULT_PAIR_SIZE (17 * 1024)
#define READ_CHUNK (16 * 1024)

lunatls_BIO *lunatls_checkbio(lua_State *L, int idx) {
    return (lunatls_BIO *)lunatls_checkopen_class(L, idx, UPV_BIO_CLASS, LUNATLS_BIO);
}

/* Pushes a BIO object that takes over one reference to bio. */
lunatls_BIO *lunatls_newbio(lua_State *L, BIO *bio) {
    lunatls_BIO *b = (lunatls_BIO *)lua_newuserdatauv(L, sizeof *b, 0);
    b->bio = bio;
    luaL_setmetatable(L, LUNATLS_BIO);
    return b;
}

static int size_arg(lua_State *L, int idx) {
    lua_Integer size = luaL_optinteger(L, idx, DEFAULT_PAIR_SIZE);
    luaL_argcheck(L, size > 0 && size <= 64 * 1024 * 1024, idx,
                  "size must be between 1 and 64 MiB");
    return (int)size;
}

/* new_bio_pair([size]) -> a, b */
static int bio_new_pair(lua_State *L) {
    int size = size_arg(L, 1);
    lunatls_BIO *a = lunatls_newbio(L, NULL);
    lunatls_BIO *b = lunatls_newbio(L, NULL);
    if (!lunatls_new_pair(L, &a->bio, &b->bio, (size_t)size)) {
        a->bio = b->bio = NULL;
        return luaL_error(L, "new_bio_pair: out of memory");
    }
    return 2;
}

/* bio:write(data[, i[, j]]) -> bytes taken (0 when full), or nil, "closed";
 * i, j: write data:sub(i, j), without copying it */
static int bio_write(lua_State *L) {
    lunatls_BIO *b = (lunatls_BIO *)lunatls_checkself(L, LUNATLS_BIO);
    size_t len;
    const char *data = lunatls_check_range(L, 2, &len);
    int n;
    if (len == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    if (len > INT_MAX) len = INT_MAX;
    n = BIO_write(b->bio, data, (int)len);
    if (n > 0) {
        lua_pushinteger(L, n);
        return 1;
    }
    ERR_clear_error();
    if (BIO_should_retry(b->bio)) {
        lua_pushinteger(L, 0);
        return 1;
    }
    luaL_pushfail(L);
    lunatls_pushword(L, UPV_CLOSED);
    return 2;
}

/* Copies want bytes from the contiguous piece at the front of what this end
 * can read into out, then consumes them (pair.c frees an emptied ring at
 * once: look, copy, then consume). 0 if fewer are there. */
static int take_piece(BIO *bio, char *out, size_t want) {
    char *p;
    ossl_ssize_t n = BIO_nread0(bio, &p);
    if (n < 0 || (size_t)n < want) return 0;
    memcpy(out, p, want);
    return BIO_nread(bio, &p, (int)want) == (ossl_ssize_t)want;
}

/* Reads want bytes (no more than are pending) out of the pair's ring buffer
 * into one Lua string, copied once: BIO_nread0 exposes the buffer. The bytes
 * lie in one piece, or in two when they wrap around the end of the ring;
 * only then is a luaL_Buffer needed. */
static int read_available(lua_State *L, lunatls_BIO *b, size_t want) {
    luaL_Buffer buf;
    char *p, *out;
    size_t first;
    ossl_ssize_t n = BIO_nread0(b->bio, &p);
    if (n <= 0) return luaL_error(L, "read: BIO pair out of step");
    if ((size_t)n >= want) {
        lua_pushlstring(L, p, want);
        /* The copy is made; the collector step after it may have run a
         * finalizer that closed this end: then there is nothing to consume. */
        if (b->bio != NULL) BIO_nread(b->bio, &p, (int)want);
        return 1;
    }
    first = (size_t)n;
    out = luaL_buffinitsize(L, &buf, want);
    /* The allocation may have run a finalizer: the end may be closed;
     * nothing below calls Lua until both pieces are copied. */
    if (b->bio == NULL) return luaL_error(L, "attempt to use a closed %s", LUNATLS_BIO);
    if (!take_piece(b->bio, out, first) || !take_piece(b->bio, out + first, want - first))
        return luaL_error(L, "read: BIO pair out of step");
    luaL_pushresultsize(&buf, want);
    return 1;
}

/* bio:read([max]) -> data, or nil, "want_read" (empty), or nil, "closed" */
static int bio_read(lua_State *L) {
    lunatls_BIO *b = (lunatls_BIO *)lunatls_checkself(L, LUNATLS_BIO);
    lua_Integer max = luaL_optinteger(L, 2, LUA_MAXINTEGER);
    size_t pending;
    luaL_argcheck(L, max > 0, 2, "max must be positive");
    pending = BIO_ctrl_pending(b->bio);
    if (pending > 0)
        return read_available(L, b, (lua_Integer)pending < max ? pending : (size_t)max);
    luaL_pushfail(L);
    /* Empty: "closed" once the other end has shut down writing (or is gone). */
    lunatls_pushword(L, BIO_eof(b->bio) ? UPV_CLOSED : UPV_WANT_READ);
    return 2;
}

/* bio:move_to(other[, max]) -> bytes moved, or nil, "closed" (other was
 * shut down or freed). Moves what this end has to read into the end
 * `other` writes to, ring to ring, with no Lua string in between: as much
 * as other takes (at most max); nothing is read that other cannot take. */
static int bio_move_to(lua_State *L) {
    lunatls_BIO *from = (lunatls_BIO *)lunatls_checkself(L, LUNATLS_BIO);
    lunatls_BIO *to = lunatls_checkbio(L, 2);
    lua_Integer max = luaL_optinteger(L, 3, LUA_MAXINTEGER), moved = 0;
    int closed = 0;
    luaL_argcheck(L, max > 0, 3, "max must be positive");
    while (moved < max) {
        char *p;
        ossl_ssize_t ready = BIO_nread0(from->bio, &p);
        int n, want;
        if (ready <= 0) break;
        want = ready > INT_MAX ? INT_MAX : (int)ready;
        if ((lua_Integer)want > max - moved) want = (int)(max - moved);
        if ((n = BIO_write(to->bio, p, want)) <= 0) { /* full (retry), or shut down */
            closed = !BIO_should_retry(to->bio);
            if (closed) ERR_clear_error(); /* what the shut-down end queued */
            break;
        }
        BIO_nread(from->bio, &p, n); /* what the other end took, and no more */
        moved += n;
    }
    if (moved == 0 && closed) {
        luaL_pushfail(L);
        lunatls_pushword(L, UPV_CLOSED);
        return 2;
    }
    lua_pushinteger(L, moved);
    return 1;
}

/* ---- a socket on the other side (transport/socket.lua) ----
 * The socket transport moves ciphertext between the network end and its
 * socket here, in C: ring to socket and socket to ring, without a Lua
 * string, a copy into LuaSocket's buffer or its 8 KiB steps (issue 11).
 * Nonblocking whatever the socket's mode (MSG_DONTWAIT), never SIGPIPE
 * (MSG_NOSIGNAL). Failures are the transport interface's results
 * (docs/transports.md): nil, message, code. */

/* Biggest piece one receive_from asks the kernel for. */
#define SOCKET_READ_MAX (64 * 1024)

static int socket_arg(lua_State *L, int idx) {
    lua_Integer fd = luaL_checkinteger(L, idx);
    luaL_argcheck(L, fd >= 0 && fd <= INT_MAX, idx, "not a socket descriptor");
    return (int)fd;
}

static int socket_failure(lua_State *L, const char *op, int err) {
    luaL_pushfail(L);
    if (err == EPIPE || err == ECONNRESET) {
        lua_pushfstring(L, "%s: the peer closed the connection", op);
        lua_pushliteral(L, "eof");
    } else {
        lua_pushfstring(L, "%s: %s", op, strerror(err));
        lua_pushliteral(L, "syscall");
    }
    return 3;
}

/* bio:send_to(fd) -> bytes sent (0 when the socket takes nothing now), or
 * nil, message, code. Sends what this end has to read, as much as the
 * socket takes; what it does not take stays here. */
static int bio_send_to(lua_State *L) {
    lunatls_BIO *b = (lunatls_BIO *)lunatls_checkself(L, LUNATLS_BIO);
    int fd = socket_arg(L, 2);
    lua_Integer sent = 0;
    for (;;) {
        char *p;
        ossl_ssize_t ready = BIO_nread0(b->bio, &p);
        ssize_t k;
        if (ready <= 0) break;
        k = send(fd, p, (size_t)ready, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            BIO_nread(b->bio, &p, (int)k); /* what the socket took, and no more */
            sent += k;
            if (k < ready) break; /* the socket is full */
        } else if (k < 0 && errno == EINTR) {
            continue;
        } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            if (sent > 0) break; /* report what went; the error comes next call */
            return socket_failure(L, "send", k == 0 ? EPIPE : errno);
        }
    }
    lua_pushinteger(L, sent);
    return 1;
}

/* bio:receive_from(fd[, max]) -> bytes received (0 when this end has no
 * room), or nil, "want_read" (nothing has arrived), or nil, "closed" (end
 * of stream), or nil, message, code. Takes no more than this end has room
 * for, and at most max (default 64 KiB). */
static int bio_receive_from(lua_State *L) {
    lunatls_BIO *b = (lunatls_BIO *)lunatls_checkself(L, LUNATLS_BIO);
    int fd = socket_arg(L, 2);
    lua_Integer max = luaL_optinteger(L, 3, SOCKET_READ_MAX);
    char buf[SOCKET_READ_MAX];
    size_t room = BIO_ctrl_get_write_guarantee(b->bio);
    ssize_t k;
    luaL_argcheck(L, max > 0, 3, "max must be positive");
    if ((lua_Integer)room > max) room = (size_t)max;
    if (room > sizeof buf) room = sizeof buf;
    if (room == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    do k = recv(fd, buf, room, MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    if (k > 0) {
        /* room is the write guarantee: the ring takes it all */
        if (BIO_write(b->bio, buf, (int)k) != (int)k)
            return luaL_error(L, "receive_from: BIO pair out of step");
        lua_pushinteger(L, (lua_Integer)k);
        return 1;
    }
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return socket_failure(L, "receive", errno);
    luaL_pushfail(L);
    lunatls_pushword(L, k == 0 ? UPV_CLOSED : UPV_WANT_READ);
    return 2;
}

static int bio_pending(lua_State *L) {
    lunatls_BIO *b = lunatls_checkbio(L, 1);
    lua_pushinteger(L, (lua_Integer)BIO_ctrl_pending(b->bio));
    return 1;
}

static int bio_write_guarantee(lua_State *L) {
    lunatls_BIO *b = lunatls_checkbio(L, 1);
    lua_pushinteger(L, (lua_Integer)BIO_ctrl_get_write_guarantee(b->bio));
    return 1;
}

static int bio_read_request(lua_State *L) {
    lunatls_BIO *b = lunatls_checkbio(L, 1);
    lua_pushinteger(L, (lua_Integer)BIO_ctrl_get_read_request(b->bio));
    return 1;
}

static int bio_shutdown_write(lua_State *L) {
    lunatls_BIO *b = lunatls_checkbio(L, 1);
    BIO_shutdown_wr(b->bio);
    lua_pushboolean(L, 1);
    return 1;
}

static int bio_close(lua_State *L) {
    lunatls_BIO *b = (lunatls_BIO *)luaL_checkudata(L, 1, LUNATLS_BIO);
    if (b->bio != NULL) {
        BIO_free(b->bio);
        b->bio = NULL;
    }
    return 0;
}

static int bio_tostring(lua_State *L) {
    lunatls_BIO *b = (lunatls_BIO *)luaL_checkudata(L, 1, LUNATLS_BIO);
    if (b->bio == NULL) return lunatls_tostring_closed(L, LUNATLS_BIO);
    lua_pushfstring(L, "%s: %p (%d bytes pending)", LUNATLS_BIO, (void *)b,
                    (int)BIO_ctrl_pending(b->bio));
    return 1;
}

void lunatls_open_bio(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"write", bio_write},
        {"read", bio_read},
        {"move_to", bio_move_to},
        {"send_to", bio_send_to},
        {"receive_from", bio_receive_from},
        {"pending", bio_pending},
        {"write_guarantee", bio_write_guarantee},
        {"read_request", bio_read_request},
        {"shutdown_write", bio_shutdown_write},
        {"close", bio_close},
        {NULL, NULL},
    };
    static const luaL_Reg metamethods[] = {
        {"__gc", bio_close},
        {"__close", bio_close},
        {"__tostring", bio_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"new_bio_pair", bio_new_pair},
        {NULL, NULL},
    };
    lunatls_newclass(L, LUNATLS_BIO, methods, metamethods);
    luaL_setfuncs(L, functions, 0);
}
