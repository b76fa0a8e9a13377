/* lunatls's own BIO pair: OpenSSL's semantics (BIO_new_bio_pair(3): a fixed
 * capacity each way, the write guarantee, the read request, shutdown of one
 * direction, BIO_nread0/BIO_nread), with one difference that matters at
 * scale: each direction's ring is allocated on the first write and freed
 * as soon as it is read empty. An idle connection then holds no buffer at
 * all, instead of two rings of 17 KiB (bench/README.md, memory).
 *
 * Each end is a BIO whose data is a Half: the bytes written to that end,
 * waiting for the other end to read them. */
#include "lunatls.h"

#include <limits.h>
#include <string.h>

#include <openssl/err.h>

/* Emptied rings of the usual size, kept for the next write: a connection
 * that sends one message at a time would otherwise allocate and free a ring
 * per message. Bounded, so idle connections still hold nothing. */
#define RING_CACHE 16
#define CACHED_SIZE (17 * 1024) /* the default pair size */

typedef struct {
    BIO_METHOD *method;
    char *rings[RING_CACHE];
    int count;
} PairShared;

typedef struct Half {
    PairShared *shared; /* of the Lua state: outlives every Half (lunatls_open_pair) */
    struct Half *peer; /* the other end's half; NULL once it is freed */
    BIO *bio;          /* this end */
    char *ring;        /* what was written here, for the peer; NULL when empty */
    size_t size;       /* capacity */
    size_t start, len; /* the bytes in the ring, from start, wrapping */
    size_t request;    /* what the peer last wanted to read and could not */
    int closed;        /* this end shut down writing */
} Half;

/* The BIO_METHOD and the ring cache live in the Lua state's registry
 * (lunatls_open_pair): freed by its finalizer, which runs after those of
 * every object made later, so after the last BIO that uses them; a static
 * would leak when Lua unloads the module, and be shared between threads. */
#define SHARED_KEY "lunatls.pair"

static size_t min_size(size_t a, size_t b) {
    return a < b ? a : b;
}

/* ---- rings ---- */

static char *ring_alloc(Half *h) {
    PairShared *shared = h->shared;
    if (h->size == CACHED_SIZE && shared->count > 0) return shared->rings[--shared->count];
    return (char *)OPENSSL_malloc(h->size);
}

static void ring_release(Half *h) {
    PairShared *shared = h->shared;
    if (h->ring != NULL && h->size == CACHED_SIZE && shared->count < RING_CACHE)
        shared->rings[shared->count++] = h->ring;
    else
        OPENSSL_free(h->ring);
    h->ring = NULL;
    h->start = 0;
}

/* ---- moving bytes ---- */

static int half_write(BIO *bio, const char *data, int n) {
    Half *h = (Half *)BIO_get_data(bio);
    size_t room, taken, tail, first;
    BIO_clear_retry_flags(bio);
    if (data == NULL || n <= 0) return 0;
    if (h->peer == NULL) {
        ERR_raise(ERR_LIB_BIO, BIO_R_UNINITIALIZED);
        return -1;
    }
    if (h->closed) {
        ERR_raise(ERR_LIB_BIO, BIO_R_BROKEN_PIPE);
        return -1;
    }
    h->request = 0;
    room = h->size - h->len;
    if (room == 0) {
        BIO_set_retry_write(bio);
        return -1;
    }
    if (h->ring == NULL && (h->ring = ring_alloc(h)) == NULL) {
        ERR_raise(ERR_LIB_BIO, ERR_R_MALLOC_FAILURE);
        return -1;
    }
    taken = min_size(room, (size_t)n);
    tail = (h->start + h->len) % h->size;
    first = min_size(taken, h->size - tail);
    memcpy(h->ring + tail, data, first);
    memcpy(h->ring, data + first, taken - first);
    h->len += taken;
    return (int)taken;
}

/* The contiguous bytes the reader `r` can take from its peer now. */
static size_t contiguous(const Half *src) {
    return min_size(src->len, src->size - src->start);
}

/* Takes n bytes (no more than contiguous) from src; frees an emptied ring. */
static void consume(Half *src, size_t n) {
    src->start = (src->start + n) % src->size;
    src->len -= n;
    if (src->len == 0) ring_release(src);
}

/* Nothing to read: EOF (0) once the writer shut down, else retry (-1). */
static int nothing_to_read(BIO *bio, Half *src, size_t wanted) {
    if (src->closed) return 0;
    src->request = min_size(wanted, src->size);
    BIO_set_retry_read(bio);
    return -1;
}

static int half_read(BIO *bio, char *out, int n) {
    Half *h = (Half *)BIO_get_data(bio), *src = h->peer;
    size_t total = 0;
    BIO_clear_retry_flags(bio);
    if (out == NULL || n <= 0) return 0;
    if (src == NULL) {
        ERR_raise(ERR_LIB_BIO, BIO_R_UNINITIALIZED);
        return -1;
    }
    if (src->len == 0) return nothing_to_read(bio, src, (size_t)n);
    src->request = 0;
    while (total < (size_t)n && src->len > 0) {
        size_t k = min_size(contiguous(src), (size_t)n - total);
        memcpy(out + total, src->ring + src->start, k);
        consume(src, k);
        total += k;
    }
    return (int)total;
}

/* BIO_nread0 (num 0) and BIO_nread (num > 0): the reader's zero-copy view.
 * Unlike OpenSSL's pair, consuming the last bytes frees the ring at once:
 * look with BIO_nread0, copy, then consume with BIO_nread (bio.c does). */
static long half_nread(BIO *bio, Half *h, long num, char **out) {
    Half *src = h->peer;
    size_t avail;
    BIO_clear_retry_flags(bio);
    if (src == NULL) return 0;
    if (src->len == 0) return nothing_to_read(bio, src, num > 0 ? (size_t)num : 1);
    avail = contiguous(src);
    if (out != NULL) *out = src->ring + src->start;
    if (num <= 0) return (long)min_size(avail, LONG_MAX);
    if ((size_t)num > avail) num = (long)avail;
    consume(src, (size_t)num);
    return num;
}

/* ---- control ---- */

static long half_ctrl(BIO *bio, int cmd, long num, void *ptr) {
    Half *h, *peer;
    /* The commands between are none of a pair's; OpenSSL asks some of them
     * often (kTLS: about a dozen per record written, issue 11): answer
     * before the call to BIO_get_data and the stack frame it needs. */
    if (cmd > BIO_CTRL_WPENDING && cmd < BIO_C_SET_WRITE_BUF_SIZE) return 0;
    h = (Half *)BIO_get_data(bio);
    if (h == NULL) return 0;
    peer = h->peer;
    switch (cmd) {
    case BIO_CTRL_PENDING: return peer != NULL ? (long)peer->len : 0;
    case BIO_CTRL_WPENDING: return (long)h->len;
    case BIO_C_GET_WRITE_GUARANTEE: return peer != NULL && !h->closed ? (long)(h->size - h->len) : 0;
    case BIO_C_GET_READ_REQUEST: return (long)h->request;
    case BIO_C_RESET_READ_REQUEST: h->request = 0; return 1;
    case BIO_C_SHUTDOWN_WR: h->closed = 1; return 1;
    case BIO_CTRL_EOF: return peer == NULL || (peer->len == 0 && peer->closed);
    case BIO_C_NREAD0: return half_nread(bio, h, 0, (char **)ptr);
    case BIO_C_NREAD: return half_nread(bio, h, num, (char **)ptr);
    case BIO_C_SET_WRITE_BUF_SIZE: /* only once unpaired: drops what the gone peer left unread */
        if (peer != NULL || num <= 0) return 0;
        ring_release(h);
        h->len = 0;
        h->size = (size_t)num;
        return 1;
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP: return 1;
    default: return 0;
    }
}

/* ---- life ---- */

static int half_create(BIO *bio) {
    BIO_set_data(bio, NULL);
    BIO_set_init(bio, 0);
    return 1;
}

/* Freeing one end leaves the other uninitialized, as OpenSSL's pair does:
 * its reads and writes fail with BIO_R_UNINITIALIZED (errors.c: "eof"). */
static int half_destroy(BIO *bio) {
    Half *h = (Half *)BIO_get_data(bio);
    if (h == NULL) return 1;
    if (h->peer != NULL) {
        h->peer->peer = NULL;
        BIO_set_init(h->peer->bio, 0);
    }
    ring_release(h);
    OPENSSL_free(h);
    BIO_set_data(bio, NULL);
    BIO_set_init(bio, 0);
    return 1;
}

static BIO_METHOD *make_method(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "lunatls pair");
    if (m == NULL || !BIO_meth_set_write(m, half_write) || !BIO_meth_set_read(m, half_read) ||
        !BIO_meth_set_ctrl(m, half_ctrl) || !BIO_meth_set_create(m, half_create) ||
        !BIO_meth_set_destroy(m, half_destroy)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

static int shared_gc(lua_State *L) {
    PairShared *shared = (PairShared *)lua_touserdata(L, 1);
    while (shared->count > 0) OPENSSL_free(shared->rings[--shared->count]);
    BIO_meth_free(shared->method);
    shared->method = NULL;
    return 0;
}

void lunatls_open_pair(lua_State *L) {
    PairShared *shared;
    /* once per state: a module loaded again (package.loaded reset) must not
     * let the first method go while its BIOs live */
    if (lua_getfield(L, LUA_REGISTRYINDEX, SHARED_KEY) == LUA_TUSERDATA) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    shared = (PairShared *)lua_newuserdatauv(L, sizeof *shared, 0);
    memset(shared, 0, sizeof *shared);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, shared_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    if ((shared->method = make_method()) == NULL) luaL_error(L, "lunatls: out of memory");
    lua_setfield(L, LUA_REGISTRYINDEX, SHARED_KEY);
}

static PairShared *pair_shared(lua_State *L) {
    PairShared *shared;
    lua_getfield(L, LUA_REGISTRYINDEX, SHARED_KEY);
    shared = (PairShared *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return shared;
}

/* Frees the emptied rings kept for reuse (release_memory in core.c). */
void lunatls_pair_release_cache(lua_State *L) {
    PairShared *shared = pair_shared(L);
    if (shared == NULL) return;
    while (shared->count > 0) OPENSSL_free(shared->rings[--shared->count]);
}

static BIO *new_half(PairShared *shared, size_t size) {
    BIO *bio = shared != NULL && shared->method != NULL ? BIO_new(shared->method) : NULL;
    Half *h = (Half *)OPENSSL_zalloc(sizeof *h);
    if (bio == NULL || h == NULL) {
        BIO_free(bio);
        OPENSSL_free(h);
        return NULL;
    }
    h->shared = shared;
    h->bio = bio;
    h->size = size;
    BIO_set_data(bio, h);
    BIO_set_init(bio, 1);
    return bio;
}

/* Two joined ends, each taking size bytes before the other reads. Returns
 * 1, or 0 (out of memory). */
int lunatls_new_pair(lua_State *L, BIO **a, BIO **b, size_t size) {
    PairShared *shared = pair_shared(L);
    Half *ha, *hb;
    *a = *b = NULL;
    if ((*a = new_half(shared, size)) == NULL || (*b = new_half(shared, size)) == NULL) {
        BIO_free(*a);
        *a = NULL;
        return 0;
    }
    ha = (Half *)BIO_get_data(*a);
    hb = (Half *)BIO_get_data(*b);
    ha->peer = hb;
    hb->peer = ha;
    return 1;
}
