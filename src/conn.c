/* lunatls.Conn: an SSL driven without blocking.
 *
 * Each I/O method makes one OpenSSL call (write and read may make a few to
 * move whole records) and returns what SSL_get_error says: a status word for
 * "call again after I/O", or nil, message, code (errors.c). */
#include "lunatls.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define RECORD_MAX 16384 /* the largest TLS plaintext record */
#define DEFAULT_PAIR_SIZE (17 * 1024)

static const char *const conn_options[] = {
    "server_name", "bio", "fd", "close_fd", "check_fd", "read_ahead", "session", "alpn", "buffer_size",
    "callback_errors", NULL,
};

#define OPTS 2 /* new_conn's options table: argument 2, a snapshot (options.c) */

lunatls_Conn *lunatls_checkconn(lua_State *L, int idx) {
    return (lunatls_Conn *)lunatls_checkopen(L, idx, LUNATLS_CONN);
}

/* ---- a failed connection stays failed ----
 *
 * After SSL_ERROR_SSL or SSL_ERROR_SYSCALL OpenSSL forbids further I/O on
 * the SSL (SSL_get_error(3)), and what it does anyway misleads: later calls
 * say "eof", "bad length" or "shutdown while in init", or, when the failure
 * came right after data in one read, nothing at all, so a truncation would
 * pass for a clean end. So the first failure is kept (CONN_UV_FAILURE) and
 * every later I/O call repeats it without calling OpenSSL. This is the one
 * place that marks a connection failed. */

/* Keeps the failure whose message and code are the two values on the stack
 * top; returns n (the results pushed). The Conn is at stack index 1. */
static int keep_failure(lua_State *L, lunatls_Conn *c, int n) {
    if (c->failed) return n; /* the first failure is the one repeated */
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, -3);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 2);
    lua_setiuservalue(L, 1, CONN_UV_FAILURE);
    c->failed = 1;
    return n;
}

/* nil, message, code of the Conn's first failure (the Conn at index 1). */
static int repeat_failure(lua_State *L) {
    luaL_pushfail(L);
    lua_getiuservalue(L, 1, CONN_UV_FAILURE);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_remove(L, -3);
    return 3;
}

/* The results of a failed SSL_* I/O call (ret <= 0), kept when fatal. */
static int io_failure(lua_State *L, lunatls_Conn *c, int ret, const char *op,
                      lunatls_StatusStyle style) {
    int fatal, n = lunatls_io_result(L, c, ret, op, style, &fatal);
    return fatal ? keep_failure(L, c, n) : n;
}

/* Keeps the callback's error (on the top of the stack, left there) as the
 * Conn's failure: "<op>: a callback raised an error...", "callback". */
static void keep_callback_failure(lua_State *L, lunatls_Conn *c, const char *op) {
    if (lua_type(L, -1) == LUA_TSTRING)
        lua_pushfstring(L, "%s: a callback raised an error: %s", op, lua_tostring(L, -1));
    else
        lua_pushfstring(L, "%s: a callback raised an error (a %s value)", op, luaL_typename(L, -1));
    lua_pushliteral(L, "callback");
    lua_pop(L, keep_failure(L, c, 2));
}

static int is_fatal(int ssl_error) {
    return ssl_error == SSL_ERROR_SSL || ssl_error == SSL_ERROR_SYSCALL;
}

/* A call that moved data and then failed returns the data; a fatal failure
 * is kept, to be returned by the next call. Called with the failed call's
 * error still queued; leaves the stack as it was. */
static void keep_late_failure(lua_State *L, lunatls_Conn *c, int ssl_error, const char *op) {
    if (is_fatal(ssl_error)) lua_pop(L, io_failure(L, c, 0, op, STATUS_SECOND));
    ERR_clear_error();
}

/* ---- calling into OpenSSL ---- */

static int busy_error(lua_State *L) {
    return luaL_error(L, "%s is busy: called from one of its own callbacks", LUNATLS_CONN);
}

/* The method's self (argument 1), open and not inside one of its own
 * callbacks: every method that changes the SSL checks this, since OpenSSL
 * is in the middle of a call on it. */
lunatls_Conn *lunatls_checkconn_idle(lua_State *L) {
    lunatls_Conn *c = (lunatls_Conn *)lunatls_checkself(L, LUNATLS_CONN);
    if (c->L != NULL) busy_error(L);
    return c;
}

/* Every method that calls SSL_* I/O brackets it with these. The running
 * thread is recorded only for the length of the call, for callbacks. c is
 * the method's self, already checked (lunatls_checkconn_idle). */
static void enter_call(lua_State *L, lunatls_Conn *c) {
    c->L = L;
    lunatls_clear_errors();
    errno = 0;
}

/* Ends the call that returned ret (1: success, <= 0: failure). An error a
 * Lua callback raised during it fails the connection (code "callback",
 * kept) when OpenSSL aborted the call because of it (the servername
 * callback: an internal_error alert), when the call moved application
 * bytes (c->unreported, which the method set: they are on their way, or
 * here, so it must not seem to have failed before them, nor be retried),
 * and always with option callback_errors = "return". Then, by default, the
 * error is raised now. With "return" nothing is raised: returns 1 and the
 * method returns repeat_failure() (the stream's way: no protected call
 * around every read and write); or, when the call moved bytes, 0: the
 * method returns them, and the next call the failure, as after any failure
 * that follows data. Returns 0 when no callback raised. */
static int end_call(lua_State *L, lunatls_Conn *c, const char *op, int ret) {
    int aborted, moved;
    c->L = NULL;
    if (!c->callback_failed) return 0;
    c->callback_failed = 0;
    aborted = ret <= 0 && is_fatal(SSL_get_error(c->ssl, ret));
    moved = c->unreported != UNREPORTED_NONE;
    ERR_clear_error();
    lua_getiuservalue(L, 1, CONN_UV_ERROR);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, CONN_UV_ERROR);
    if (aborted || moved || c->return_callback_errors) keep_callback_failure(L, c, op);
    if (!c->return_callback_errors) return lua_error(L);
    lua_pop(L, 1);
    return !moved;
}

/* The descriptor the socket object given as fd says it holds now, from its
 * getfd() method; -1 when it says none (or something other than a number). */
static lua_Integer asked_fd(lua_State *L, lunatls_Conn *c) {
    lua_Integer fd;
    int isnum, status;
    lua_getiuservalue(L, 1, CONN_UV_TRANSPORT);
    lua_getfield(L, -1, "getfd");
    lua_insert(L, -2);
    /* busy meanwhile, as in a callback: a getfd() that closed or drove the
     * Conn would pull the SSL from under the method that asked */
    c->L = L;
    status = lua_pcall(L, 1, 1, 0);
    c->L = NULL;
    if (status != LUA_OK) lua_error(L);
    fd = lua_tointegerx(L, -1, &isnum); /* LuaSocket's getfd() gives a float */
    lua_pop(L, 1);
    return isnum ? fd : -1;
}

/* Option check_fd: does the socket object given as fd still hold the
 * Conn's descriptor? A socket closed under the Conn says -1, and the system
 * may have given the number to a socket opened since, which OpenSSL would
 * then read and write. If not, the Conn fails, code "eof" (kept: every later
 * call repeats it). Every I/O method asks, after the failed check. The Conn
 * is at index 1. */
static int socket_still_held(lua_State *L, lunatls_Conn *c) {
    if (!c->check_fd) return 1;
    if (c->fd_word != NULL ? *c->fd_word == c->fd : asked_fd(L, c) == c->fd) return 1;
    lua_pushliteral(L, "the socket was closed under the connection");
    lua_pushliteral(L, "eof");
    lua_pop(L, keep_failure(L, c, 2));
    return 0;
}

/* The last read or write moved bytes, then an error was raised before it
 * returned them: out of memory making its result (the only error that can
 * come between). A read's bytes are gone from OpenSSL, a write's on their
 * way unreported: the stream cannot go on as if they were not, so the Conn
 * fails, code "memory" (unless it had failed already: a callback's error
 * raised then). Cleared once kept: another memory error meanwhile leaves it
 * for the next call. */
static void keep_lost_bytes_failure(lua_State *L, lunatls_Conn *c) {
    lua_pushfstring(L, "%s: out of memory before the call returned the bytes it had moved",
                    c->unreported == UNREPORTED_READ ? "read" : "write");
    lua_pushliteral(L, "memory");
    lua_pop(L, keep_failure(L, c, 2));
    c->unreported = UNREPORTED_NONE;
}

/* May the Conn do I/O: not failed before (nor by bytes a raised error
 * lost), its socket still held? */
static int may_do_io(lua_State *L, lunatls_Conn *c) {
    if (!(c->failed | c->check_fd | c->unreported)) return 1; /* the common case: one test */
    if (c->unreported) keep_lost_bytes_failure(L, c);
    return !c->failed && socket_still_held(L, c);
}

/* The method's self, idle; NULL when the Conn may not do I/O (the caller
 * then repeats the failure). */
static lunatls_Conn *self_for_io(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn_idle(L);
    return may_do_io(L, c) ? c : NULL;
}

/* ---- construction ---- */

/* The open object of type tname held by option `name` (on the stack top). */
static void *option_object(lua_State *L, const char *name, const char *tname) {
    if (luaL_testudata(L, -1, tname) == NULL) lunatls_opt_type_error(L, OPTS, name, tname);
    return lunatls_checkopen(L, lua_gettop(L), tname);
}

/* The value at idx if it is a number with an integral value (3 or 3.0), else -1. */
static lua_Integer integral_number(lua_State *L, int idx) {
    int ok = 0;
    lua_Integer n = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &ok) : 0;
    return ok ? n : -1;
}

/* The socket number of an integer, or of an object with a getfd() method. */
static int fd_of(lua_State *L, int idx) {
    lua_Integer fd;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        fd = integral_number(L, idx); /* sock:getfd() passed as is: a float */
    } else {
        if (luaL_getmetafield(L, idx, "__index") == LUA_TNIL)
            luaL_argerror(L, OPTS, "option 'fd': integer or object with getfd() expected");
        lua_pop(L, 1);
        lua_getfield(L, idx, "getfd");
        if (!lua_isfunction(L, -1))
            luaL_argerror(L, OPTS, "option 'fd': integer or object with getfd() expected");
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        fd = integral_number(L, -1); /* LuaSocket's getfd() gives a float */
        lua_pop(L, 1);
    }
    if (fd < 0 || fd > INT32_MAX) luaL_argerror(L, OPTS, "option 'fd': not a valid socket");
    return (int)fd;
}

static void attach_bio(lua_State *L, lunatls_Conn *c) {
    lunatls_BIO *b = (lunatls_BIO *)option_object(L, "bio", LUNATLS_BIO);
    BIO_up_ref(b->bio); /* SSL_set_bio takes one reference */
    SSL_set_bio(c->ssl, b->bio, b->bio);
}

static void attach_fd(lua_State *L, lunatls_Conn *c, int ud) {
    int fd = fd_of(L, lua_gettop(L));
    BIO *bio = lunatls_new_socket_bio(L, fd);
    if (bio == NULL) luaL_error(L, "new_conn: out of memory");
    SSL_set_bio(c->ssl, bio, bio); /* one BIO both ways: SSL_set_bio takes the one reference */
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, ud, CONN_UV_TRANSPORT);
    c->fd_mode = 1;
    c->fd = fd;
}

/* A BIO pair of the connection's own; conn:bio() gives its network end. */
static void attach_own_pair(lua_State *L, lunatls_Conn *c, int ud) {
    lua_Integer size = DEFAULT_PAIR_SIZE;
    BIO *inner, *outer;
    lunatls_BIO *net;
    if (lunatls_opt_push(L, OPTS, "buffer_size", LUA_TNUMBER, "integer"))
        size = lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_argcheck(L, size > 0 && size <= 64 * 1024 * 1024, OPTS,
                  "option 'buffer_size' must be between 1 and 64 MiB");
    net = lunatls_newbio(L, NULL);
    if (!lunatls_new_pair(L, &inner, &outer, (size_t)size)) luaL_error(L, "new_conn: out of memory");
    net->bio = outer;
    SSL_set_bio(c->ssl, inner, inner);
    lua_setiuservalue(L, ud, CONN_UV_NETBIO);
}

/* Connects the SSL to the BIO end, the fd, or a new BIO pair of its own. */
static void attach_transport(lua_State *L, lunatls_Conn *c, int ud) {
    if (lunatls_opt_push(L, OPTS, "bio", LUA_TUSERDATA, LUNATLS_BIO)) {
        attach_bio(L, c);
    } else {
        lua_pushliteral(L, "fd");
        if (lua_rawget(L, OPTS) != LUA_TNIL) attach_fd(L, c, ud);
        else attach_own_pair(L, c, ud);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Option close_fd: the Conn owns its descriptor and closes it when freed
 * (conn:close(), or collected), so that the application need not keep a
 * socket object per connection (LuaSocket's is ~9 KB: bench/README.md,
 * memory). Only a descriptor number: a socket object closes its own. Runs
 * last in new_conn: a new_conn that raises leaves the descriptor open. */
static void take_fd(lua_State *L, lunatls_Conn *c, int ud) {
    if (!lunatls_opt_boolean(L, OPTS, "close_fd", 0)) return;
    if (!c->fd_mode) luaL_argerror(L, OPTS, "option 'close_fd' needs option 'fd'");
    if (lua_getiuservalue(L, ud, CONN_UV_TRANSPORT) != LUA_TNUMBER)
        luaL_argerror(L, OPTS, "option 'close_fd': 'fd' must be a descriptor number "
                               "(a socket object closes its own)");
    lua_pop(L, 1);
    BIO_set_close(SSL_get_rbio(c->ssl), BIO_CLOSE);
}

/* LuaSocket's TCP objects ("tcp{client}", "tcp{server}": its tcp.c) are
 * userdata that begin with their descriptor (t_tcp's first member, an int;
 * close() and setfd() change it, -1 once closed). check_fd reads it there:
 * getfd() through the object's metatable and a protected call cost ~800
 * instructions per I/O call, a sixth of what a 1 KiB message costs the
 * stream over and above OpenSSL (bench/README.md). Only for those classes,
 * and only when the word holds the Conn's descriptor now; anything else is
 * asked with getfd() each time. The Conn keeps the object (its transport
 * uservalue), so the word stays where it is. */
static const int *luasocket_fd_word(lua_State *L, int idx, int fd) {
    static const char *const classes[] = {"tcp{client}", "tcp{server}"};
    size_t i;
    for (i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        const int *word = (const int *)luaL_testudata(L, idx, classes[i]);
        if (word != NULL && lua_rawlen(L, idx) >= sizeof(int) && *word == fd) return word;
    }
    return NULL;
}

/* Option check_fd (socket_still_held): only with fd a socket object, which
 * is asked for its descriptor before each I/O call (or read directly:
 * luasocket_fd_word). */
static void set_check_fd(lua_State *L, lunatls_Conn *c, int ud) {
    if (!lunatls_opt_boolean(L, OPTS, "check_fd", 0)) return;
    if (!c->fd_mode || lua_getiuservalue(L, ud, CONN_UV_TRANSPORT) == LUA_TNUMBER)
        luaL_argerror(L, OPTS, "option 'check_fd' needs option 'fd' to be a socket object");
    c->fd_word = luasocket_fd_word(L, -1, c->fd);
    lua_pop(L, 1);
    c->check_fd = 1;
}

/* Option callback_errors: "raise" (the default: the method that was running
 * raises the callback's error) or "return" (end_call). */
static void set_callback_errors(lua_State *L, lunatls_Conn *c) {
    static const char *const ways[] = {"raise", "return", NULL};
    c->return_callback_errors = lunatls_opt_choice(L, OPTS, "callback_errors", "raise", ways) == 1;
}

/* Option read_ahead: OpenSSL reads as many bytes as its buffer takes (16 KiB
 * and more) instead of each record's header, then its body. Over a socket a
 * record then costs no read call of its own: small records of a bulk
 * transfer come in by the dozen per recv, and a 1 KiB message in one recv
 * instead of two (bench/README.md). Records read ahead wait inside OpenSSL,
 * where neither the socket nor conn:pending() shows them: whoever waits for
 * the socket must first read until "want_read" (the stream does), and
 * conn:has_pending() says whether any are there. */
static void set_read_ahead(lua_State *L, lunatls_Conn *c) {
    if (lunatls_opt_boolean(L, OPTS, "read_ahead", 0)) SSL_set_read_ahead(c->ssl, 1);
}

/* Client: SNI and, unless the context says not to, the host-name check. An
 * IP address is checked against the certificate's IP SANs and not sent as
 * SNI (RFC 6066 forbids it). */
static void set_server_name(lua_State *L, lunatls_Conn *c, const char *name, int check) {
    X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
                                               X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_ip_asc(param, name) == 1) {
        if (!check) X509_VERIFY_PARAM_set1_ip(param, NULL, 0);
        return;
    }
    ERR_clear_error();
    if (SSL_set_tlsext_host_name(c->ssl, name) != 1 || (check && SSL_set1_host(c->ssl, name) != 1))
        luaL_argerror(L, OPTS, lua_pushfstring(L, "option 'server_name': invalid name %s",
                                               lunatls_push_quoted(L, name, strlen(name))));
}

/* Whether the session's server certificate is valid for name (a host name
 * or an IP address), under the host-name rules set_server_name sets. */
static int session_fits(SSL_SESSION *s, const char *name) {
    X509 *peer = SSL_SESSION_get0_peer(s);
    unsigned int flags = X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS;
    int fits;
    if (peer == NULL) return 0;
    fits = X509_check_ip_asc(peer, name, 0);
    if (fits < 0) fits = X509_check_host(peer, name, 0, flags, NULL); /* not an IP address */
    ERR_clear_error();
    return fits == 1;
}

/* A session resumes without any certificate check, so a client that checks
 * host names may resume only a session whose server was valid for the name
 * it checks now: anything else is a mistake of the caller's cache. */
static void set_session(lua_State *L, lunatls_Conn *c, const char *name, int check) {
    lunatls_Session *s;
    if (!lunatls_opt_push(L, OPTS, "session", LUA_TUSERDATA, LUNATLS_SESSION)) {
        lua_pop(L, 1);
        return;
    }
    s = (lunatls_Session *)option_object(L, "session", LUNATLS_SESSION);
    if (check && name != NULL && !session_fits(s->session, name))
        luaL_argerror(L, OPTS, lua_pushfstring(L, "option 'session': the session's server is not "
                                                  "valid for %s", lunatls_push_quoted(L, name, strlen(name))));
    if (SSL_set_session(c->ssl, s->session) != 1)
        luaL_error(L, "new_conn: %s", lunatls_last_reason());
    lua_pop(L, 1);
}

static void set_peer_options(lua_State *L, lunatls_Conn *c, lunatls_Context *ctx) {
    const char *name = lunatls_opt_string(L, OPTS, "server_name", NULL);
    if (name != NULL && c->is_server)
        luaL_argerror(L, OPTS, "option 'server_name' is for client connections");
    if (name != NULL) set_server_name(L, c, name, ctx->check_hostname);
    if (name == NULL && ctx->check_hostname)
        luaL_argerror(L, OPTS, "option 'server_name' is required to verify the server's host "
                               "name (or create the context with check_hostname = false)");
    set_session(L, c, name, ctx->check_hostname);
}

static void set_alpn_override(lua_State *L, lunatls_Conn *c) {
    size_t len;
    const char *wire;
    if (lunatls_opt_list(L, OPTS, "alpn") < 0) return;
    if (c->is_server) luaL_argerror(L, OPTS, "option 'alpn' is for client connections");
    wire = lunatls_push_alpn_wire(L, lua_gettop(L), OPTS, &len);
    if (SSL_set_alpn_protos(c->ssl, (const unsigned char *)wire, (unsigned int)len) != 0)
        luaL_error(L, "new_conn: out of memory");
    lua_pop(L, 2);
}

/* context:new_conn([opts]) -> conn */
int lunatls_conn_new(lua_State *L) {
    lunatls_Context *ctx = lunatls_checkcontext(L, 1);
    lunatls_Conn *c;
    if (lua_isnoneornil(L, OPTS)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    lua_settop(L, OPTS);
    lunatls_options_snapshot(L, OPTS, conn_options);
    c = (lunatls_Conn *)lua_newuserdatauv(L, sizeof *c, CONN_NUV);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, LUNATLS_CONN);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 3, CONN_UV_CONTEXT);
    c->is_server = ctx->is_server;
    c->first_ctx = ctx->ctx;
    ERR_clear_error();
    c->ssl = SSL_new(ctx->ctx);
    if (c->ssl == NULL) return luaL_error(L, "new_conn: %s", lunatls_last_reason());
    SSL_set_app_data(c->ssl, c);
    if (c->is_server) SSL_set_accept_state(c->ssl);
    else SSL_set_connect_state(c->ssl);
    attach_transport(L, c, 3);
    set_check_fd(L, c, 3);
    set_read_ahead(L, c);
    set_callback_errors(L, c);
    set_peer_options(L, c, ctx);
    set_alpn_override(L, c);
    take_fd(L, c, 3);
    lua_settop(L, 3);
    return 1;
}

/* ---- I/O ---- */

static int conn_do_handshake(lua_State *L) {
    lunatls_Conn *c = self_for_io(L);
    int ret;
    if (c == NULL) return repeat_failure(L);
    enter_call(L, c);
    ret = SSL_do_handshake(c->ssl);
    if (end_call(L, c, "do_handshake", ret)) return repeat_failure(L);
    if (ret == 1) {
        lunatls_pushword(L, UPV_DONE);
        return 1;
    }
    return io_failure(L, c, ret, "do_handshake", STATUS_FIRST);
}

/* Anything to read without waiting: bytes inside OpenSSL (decrypted, or
 * records read ahead), or bytes in the BIO. */
static int more_buffered(lunatls_Conn *c) {
    return SSL_has_pending(c->ssl) || BIO_ctrl_pending(SSL_get_rbio(c->ssl)) > 0;
}

/* Whether a read that got data should try for more records. A socket does
 * not say what it holds (BIO_ctrl_pending is 0): in descriptor mode trying
 * is how to know, and a try that finds nothing costs one recv (EAGAIN).
 * Without it every record of a bulk transfer was a read call of its own
 * from Lua (issue 11: 64-byte writes, one stream receive each). */
static int may_gather(lunatls_Conn *c) {
    return c->fd_mode || more_buffered(c);
}

/* A read that found nothing to read leaves the connection idle. When the
 * records it processed were handshake messages (the TLS 1.3 session
 * tickets a client reads: they replace its session), OpenSSL keeps its
 * 16.6 KB read buffer despite SSL_MODE_RELEASE_BUFFERS: give it back. Only
 * then: SSL_free_buffers costs ~800 instructions even with nothing to free. */
static void release_idle_buffers(lunatls_Conn *c) {
    const SSL_SESSION *session = SSL_get_session(c->ssl);
    if (session == c->session_seen) return;
    c->session_seen = session;
    if (!more_buffered(c)) SSL_free_buffers(c->ssl);
}

/* The results of a read (read, read_into) whose first SSL_read_ex failed:
 * usually "want_read", the connection idle (asked once: SSL_get_error
 * costs ~250 instructions); else the failure. */
static int nothing_read(lua_State *L, lunatls_Conn *c) {
    if (end_call(L, c, "read", 0)) return repeat_failure(L);
    if (SSL_get_error(c->ssl, 0) == SSL_ERROR_WANT_READ) {
        release_idle_buffers(c);
        return lunatls_push_status(L, UPV_WANT_READ, STATUS_SECOND);
    }
    return io_failure(L, c, 0, "read", STATUS_SECOND);
}

/* Reads records into p until room is full or a read fails; then *stopped
 * is its SSL_get_error (its error still queued, for keep_late_failure).
 * Returns the bytes read. */
static size_t read_more(lunatls_Conn *c, char *p, size_t room, int *stopped) {
    size_t total = 0, n;
    while (total < room) {
        if (!SSL_read_ex(c->ssl, p + total, room - total, &n)) {
            *stopped = SSL_get_error(c->ssl, 0);
            break;
        }
        total += n;
    }
    return total;
}

/* The records a read (read, read_into) finds here, into p, at most limit
 * bytes: returns 0 when the first SSL_read_ex found nothing (nothing_read
 * then gives the results), else 1 with *n the bytes read and *stopped as
 * read_more sets it (SSL_ERROR_NONE while limit was not reached). */
static int read_records(lunatls_Conn *c, char *p, size_t limit, size_t *n, int *stopped) {
    if (!SSL_read_ex(c->ssl, p, limit, n)) return 0;
    if (*n < limit && may_gather(c)) *n += read_more(c, p + *n, limit - *n, stopped);
    return 1;
}

/* Past RECORD_MAX bytes (a max larger than the default): the rest of the
 * gathering goes through a luaL_Buffer, which starts with what buf holds. */
static void read_beyond(lua_State *L, lunatls_Conn *c, const char *buf, size_t len,
                        lua_Integer max) {
    luaL_Buffer b;
    int stopped = SSL_ERROR_NONE;
    /* Growing the buffer can raise (out of memory): the Conn is marked busy
     * only while OpenSSL runs, so such an error cannot leave it busy. */
    c->L = NULL;
    luaL_buffinitsize(L, &b, len + RECORD_MAX);
    luaL_addlstring(&b, buf, len);
    max -= (lua_Integer)len;
    while (max > 0 && stopped == SSL_ERROR_NONE) {
        size_t want = max < RECORD_MAX ? (size_t)max : RECORD_MAX;
        char *room = luaL_prepbuffsize(&b, want);
        size_t n;
        if (c->ssl == NULL) break; /* a finalizer run by the allocation closed it */
        c->L = L;
        n = read_more(c, room, want, &stopped);
        c->L = NULL;
        luaL_addsize(&b, n);
        max -= (lua_Integer)n;
        if (stopped != SSL_ERROR_NONE) keep_late_failure(L, c, stopped, "read");
    }
    luaL_pushresult(&b);
    c->L = L; /* for end_call */
}

/* conn:read([max]) -> data, or nil, status, or nil, message, code.
 * Reads at most max bytes (default: one record); takes several records in
 * one call when they are already here and max allows. Up to RECORD_MAX
 * bytes gather on the C stack and are copied once, into the string. A
 * failure after data is kept and returned by the next call. */
static int conn_read(lua_State *L) {
    char buf[RECORD_MAX];
    lua_Integer max;
    lunatls_Conn *c;
    size_t limit, n = 0;
    int stopped = SSL_ERROR_NONE;
    c = lunatls_checkconn_idle(L); /* first: conn.read(42) names the Conn */
    max = luaL_optinteger(L, 2, RECORD_MAX);
    luaL_argcheck(L, max > 0, 2, "max must be positive");
    if (!may_do_io(L, c)) return repeat_failure(L);
    enter_call(L, c);
    limit = max < RECORD_MAX ? (size_t)max : RECORD_MAX;
    if (!read_records(c, buf, limit, &n, &stopped)) return nothing_read(L, c);
    c->unreported = UNREPORTED_READ; /* until the string is made */
    if (stopped == SSL_ERROR_NONE && (lua_Integer)n < max && may_gather(c)) {
        /* buf is full, max allows more, and more records wait */
        read_beyond(L, c, buf, n, max);
        if (end_call(L, c, "read", 1)) return repeat_failure(L);
    } else {
        if (end_call(L, c, "read", 1)) return repeat_failure(L);
        if (stopped != SSL_ERROR_NONE) keep_late_failure(L, c, stopped, "read");
        lua_pushlstring(L, buf, n);
    }
    c->unreported = UNREPORTED_NONE;
    return 1;
}

/* conn:read_into(buffer[, max]) -> bytes read, or nil, status, or nil,
 * message, code. conn:read without a Lua string: the records that are
 * here, up to max (default: the buffer's capacity), replace what buffer
 * held. For programs that forward or count what they read (issue 11). */
static int conn_read_into(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn_idle(L);
    lunatls_Buffer *b = lunatls_checkbuffer(L, 2);
    lua_Integer max = luaL_optinteger(L, 3, (lua_Integer)b->capacity);
    size_t limit, n = 0;
    int stopped = SSL_ERROR_NONE;
    luaL_argcheck(L, max > 0, 3, "max must be positive");
    limit = (size_t)max < b->capacity ? (size_t)max : b->capacity;
    b->len = 0;
    if (!may_do_io(L, c)) return repeat_failure(L);
    enter_call(L, c);
    if (!read_records(c, b->bytes, limit, &n, &stopped)) return nothing_read(L, c);
    c->unreported = UNREPORTED_READ;
    if (end_call(L, c, "read", 1)) return repeat_failure(L);
    if (stopped != SSL_ERROR_NONE) keep_late_failure(L, c, stopped, "read");
    b->len = n;
    c->unreported = UNREPORTED_NONE;
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* How much of `len` bytes one SSL_write_ex may be given: one record's
 * worth. Given more, OpenSSL that finishes sending a record left half sent
 * by the previous call goes on to the next record, and when that one does
 * not fit it fails with want_write, although the record it finished is
 * gone to the peer: the write would say "nothing taken" about bytes the
 * peer reads. One record per call, the record a call leaves half sent is
 * exactly what the retry offers first, and reports when it completes.
 * The record size is 16 KiB, or what the client asked for with the
 * max_fragment_length extension (RFC 6066: 512 << (code - 1)). */
static size_t one_record(lunatls_Conn *c, size_t len) {
    const SSL_SESSION *session = SSL_get_session(c->ssl);
    uint8_t code = session != NULL ? SSL_SESSION_get_max_fragment_length(session) : 0;
    size_t record = code >= TLSEXT_max_fragment_length_512 && code <= TLSEXT_max_fragment_length_4096
                        ? (size_t)512 << (code - 1)
                        : RECORD_MAX;
    return len < record ? len : record;
}

/* conn:write(data[, i[, j]]) -> bytes taken, or nil, status, or nil,
 * message, code. i, j: write data:sub(i, j), without copying it.
 * Fewer than #data are taken when the output buffer fills; the next write
 * must begin with the bytes not taken (OpenSSL may hold them as a record
 * already half sent). A failure after some bytes were taken is kept and
 * returned by the next call. */
static int conn_write(lua_State *L) {
    size_t len, total = 0, n;
    const char *data;
    lunatls_Conn *c;
    int ret = 1;
    c = lunatls_checkconn_idle(L); /* self first, then the data */
    data = lunatls_check_range(L, 2, &len);
    if (!may_do_io(L, c)) return repeat_failure(L);
    if (len == 0) { /* SSL_write of 0 bytes fails misleadingly: nothing to do */
        lua_pushinteger(L, 0);
        return 1;
    }
    enter_call(L, c);
    while (total < len && (ret = SSL_write_ex(c->ssl, data + total, one_record(c, len - total),
                                              &n)) == 1)
        total += n;
    if (total > 0) c->unreported = UNREPORTED_WRITE;
    if (end_call(L, c, "write", total > 0 ? 1 : ret)) return repeat_failure(L);
    if (total == 0) return io_failure(L, c, ret, "write", STATUS_SECOND);
    if (ret != 1) keep_late_failure(L, c, SSL_get_error(c->ssl, ret), "write");
    c->unreported = UNREPORTED_NONE;
    lua_pushinteger(L, (lua_Integer)total);
    return 1;
}

/* conn:shutdown() -> "done" (both close_notify crossed), "want_read" (ours
 * sent, the peer's not yet here), "want_write", or nil, message, code */
static int conn_shutdown(lua_State *L) {
    lunatls_Conn *c = self_for_io(L);
    int ret;
    if (c == NULL) return repeat_failure(L);
    enter_call(L, c);
    ret = SSL_shutdown(c->ssl);
    if (end_call(L, c, "shutdown", ret < 0 ? ret : 1)) return repeat_failure(L);
    if (ret == 1) {
        lunatls_pushword(L, UPV_DONE);
        return 1;
    }
    if (ret == 0) {
        lunatls_pushword(L, UPV_WANT_READ);
        return 1;
    }
    return io_failure(L, c, ret, "shutdown", STATUS_FIRST);
}

static int conn_set_connect_state(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn_idle(L);
    SSL_set_connect_state(c->ssl);
    c->is_server = 0;
    return 0;
}

static int conn_set_accept_state(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn_idle(L);
    SSL_set_accept_state(c->ssl);
    c->is_server = 1;
    return 0;
}

static int handshake_done(lunatls_Conn *c) {
    return SSL_is_init_finished(c->ssl);
}

static int conn_key_update(lua_State *L) {
    lunatls_Conn *c = self_for_io(L);
    int ret;
    if (c == NULL) return repeat_failure(L);
    /* before the handshake OpenSSL says "wrong ssl version": misleading */
    if (!handshake_done(c))
        return lunatls_fail(L, "key_update: the handshake is not done", "protocol");
    enter_call(L, c);
    ret = SSL_key_update(c->ssl, lua_toboolean(L, 2) ? SSL_KEY_UPDATE_REQUESTED
                                                     : SSL_KEY_UPDATE_NOT_REQUESTED);
    if (end_call(L, c, "key_update", 1)) return repeat_failure(L);
    if (ret != 1) {
        const char *reason = lunatls_last_reason();
        lua_pushfstring(L, "key_update: %s", reason != NULL ? reason : "not possible now");
        return lunatls_fail(L, lua_tostring(L, -1), "protocol");
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:verify_client_post_handshake() -> true, or nil, message, code.
 * Server, TLS 1.3, a client that offered post-handshake authentication:
 * asks for the client's certificate now; the next write or read carries
 * the request and the answer, and peer_certificate() then returns it. The
 * context's verify mode and trust store judge it ("require": no
 * certificate fails the connection). */
static int conn_verify_client_post_handshake(lua_State *L) {
    lunatls_Conn *c = self_for_io(L);
    if (c == NULL) return repeat_failure(L);
    luaL_argcheck(L, c->is_server, 1, "a server connection expected");
    if (!handshake_done(c))
        return lunatls_fail(L, "verify_client_post_handshake: the handshake is not done", "protocol");
    lunatls_clear_errors();
    SSL_set_verify(c->ssl, SSL_get_verify_mode(c->ssl) | SSL_VERIFY_PEER | SSL_VERIFY_POST_HANDSHAKE,
                   NULL);
    if (SSL_verify_client_post_handshake(c->ssl) != 1) {
        const char *reason = lunatls_last_reason();
        lua_pushfstring(L, "verify_client_post_handshake: %s", reason != NULL ? reason : "not possible now");
        return lunatls_fail(L, lua_tostring(L, -1), "protocol");
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- accessors ---- */


static int push_string_or_nil(lua_State *L, const char *s) {
    if (s == NULL) lua_pushnil(L);
    else lua_pushstring(L, s);
    return 1;
}

static int conn_version(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    return push_string_or_nil(L, handshake_done(c) ? SSL_get_version(c->ssl) : NULL);
}

static int conn_cipher(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    const SSL_CIPHER *cipher = handshake_done(c) ? SSL_get_current_cipher(c->ssl) : NULL;
    return push_string_or_nil(L, cipher != NULL ? SSL_CIPHER_get_name(cipher) : NULL);
}

/* The key-exchange group negotiated ("x25519", "secp256r1"), nil before. */
static int conn_group(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    int nid = handshake_done(c) ? SSL_get_negotiated_group(c->ssl) : 0;
    return push_string_or_nil(L, nid != 0 ? SSL_group_to_name(c->ssl, nid) : NULL);
}

static int conn_alpn_selected(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    const unsigned char *proto = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(c->ssl, &proto, &len);
    if (proto == NULL || len == 0) lua_pushnil(L);
    else lua_pushlstring(L, (const char *)proto, len);
    return 1;
}

/* A server gives the name the client's ClientHello asked for (hello.c),
 * also on a resumption; a client the name it sent. */
static int conn_server_name(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    if (!c->is_server) return push_string_or_nil(L, SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name));
    lua_getiuservalue(L, 1, CONN_UV_SERVER_NAME);
    return 1;
}

/* The objects below are made before their OpenSSL pointer is fetched: the
 * allocation may run a finalizer that closes this Conn (and frees what the
 * SSL holds), so the Conn is checked again after it. */

static int conn_peer_certificate(lua_State *L) {
    lunatls_Certificate *cert;
    X509 *x;
    lunatls_checkconn(L, 1);
    cert = lunatls_newcertificate(L);
    x = SSL_get0_peer_certificate(lunatls_checkconn(L, 1)->ssl);
    if (x == NULL) {
        lua_pushnil(L);
        return 1;
    }
    X509_up_ref(x);
    cert->x509 = x;
    return 1;
}

/* Entry i of the chain as the peer sent it; -1: a server's view lacks the
 * client's own certificate, which goes first. NULL past the end. */
static X509 *chain_entry(lunatls_Conn *c, int i) {
    STACK_OF(X509) *chain;
    if (c->ssl == NULL || (chain = SSL_get_peer_cert_chain(c->ssl)) == NULL) return NULL;
    if (i < 0) return c->is_server ? SSL_get0_peer_certificate(c->ssl) : NULL;
    return i < sk_X509_num(chain) ? sk_X509_value(chain, i) : NULL;
}

/* The chain as the peer sent it, its own certificate first. */
static int conn_peer_chain(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    int i, n = 0;
    lua_newtable(L);
    for (i = -1;; i++) {
        lunatls_Certificate *cert = lunatls_newcertificate(L);
        X509 *x = chain_entry(c, i);
        if (x == NULL) {
            lua_pop(L, 1);
            if (i < 0) continue;
            break;
        }
        X509_up_ref(x);
        cert->x509 = x;
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

static int conn_verify_result(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    long v = SSL_get_verify_result(c->ssl);
    lua_pushinteger(L, v);
    lua_pushstring(L, v == X509_V_OK ? "ok" : X509_verify_cert_error_string(v));
    return 2;
}

/* nil until the handshake is done: a client's session before the
 * ServerHello has no cipher and cannot even be exported. */
static int conn_session(lua_State *L) {
    lunatls_Session *session;
    SSL_SESSION *s;
    if (!handshake_done(lunatls_checkconn(L, 1))) {
        lua_pushnil(L);
        return 1;
    }
    session = lunatls_newsession(L);
    s = SSL_get_session(lunatls_checkconn(L, 1)->ssl);
    if (s == NULL) {
        lua_pushnil(L);
        return 1;
    }
    SSL_SESSION_up_ref(s);
    session->session = s;
    return 1;
}

static int conn_session_reused(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    lua_pushboolean(L, SSL_session_reused(c->ssl));
    return 1;
}

/* Why OpenSSL refused an export after the handshake: a label TLS reserves
 * for itself ("master secret", ...), or one too long for TLS 1.3's labels. */
static int exporter_error(lua_State *L, size_t label_len) {
    const char *reason = lunatls_last_reason();
    if (reason != NULL)
        lua_pushfstring(L, "export_keying_material: %s", reason);
    else
        lua_pushfstring(L, "export_keying_material: the label (%d bytes) was refused",
                        (int)label_len);
    return lunatls_fail(L, lua_tostring(L, -1), "protocol");
}

/* conn:export_keying_material(label, length[, context]) (RFC 5705, 8446) */
static int conn_export_keying_material(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    size_t label_len, context_len = 0;
    const char *label = luaL_checklstring(L, 2, &label_len);
    lua_Integer length = luaL_checkinteger(L, 3);
    const char *context = luaL_optlstring(L, 4, NULL, &context_len);
    luaL_Buffer b;
    unsigned char *out;
    luaL_argcheck(L, length > 0 && length <= 16384, 3, "length must be between 1 and 16384");
    out = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)length);
    c = lunatls_checkconn(L, 1); /* a finalizer run by the allocation may have closed it */
    ERR_clear_error();
    if (!handshake_done(c))
        return lunatls_fail(L, "export_keying_material: the handshake is not done", "protocol");
    if (SSL_export_keying_material(c->ssl, out, (size_t)length, label, label_len,
                                   (const unsigned char *)context, context_len,
                                   context != NULL) != 1)
        return exporter_error(L, label_len);
    luaL_pushresultsize(&b, (size_t)length);
    return 1;
}

static int conn_pending(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    lua_pushinteger(L, SSL_pending(c->ssl));
    return 1;
}

/* Whether a read may give something without new bytes from the transport:
 * decrypted bytes, records read ahead (option read_ahead), or bytes in the
 * BIO pair (more_buffered). */
static int conn_has_pending(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    lua_pushboolean(L, more_buffered(c));
    return 1;
}

static int conn_bio(lua_State *L) {
    lunatls_checkself(L, LUNATLS_CONN);
    lua_getiuservalue(L, 1, CONN_UV_NETBIO);
    return 1;
}

/* Once SSL_free has freed our end of the connection's own BIO pair, the
 * network end only ever says "closed", but it keeps its 17 KiB buffer until
 * the collector frees it: release that now (allowed on an end that is no
 * longer paired), so that a busy server reuses warm memory. */
static void release_network_end(lua_State *L) {
    lunatls_BIO *net;
    lua_getiuservalue(L, 1, CONN_UV_NETBIO);
    net = (lunatls_BIO *)lua_touserdata(L, -1);
    if (net != NULL && net->bio != NULL) BIO_set_write_buf_size(net->bio, 1);
    lua_pop(L, 1);
}

/* close(), __gc and __close: frees everything, never does network I/O. */
static int conn_close(lua_State *L) {
    lunatls_Conn *c = (lunatls_Conn *)luaL_checkudata(L, 1, LUNATLS_CONN);
    if (c->L != NULL) return busy_error(L);
    if (c->ssl != NULL) {
        /* SSL_free marks the session of a connection that did not send
         * close_notify as not resumable (TLS 1.0's rule, dropped by RFC 4346
         * and RFC 8446 6.1). close() never does I/O, so say the shutdown
         * happened: a session saved from a good connection stays usable.
         * A fatal error has already spoiled the session, as it should. */
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(c->ssl);
        c->ssl = NULL;
        release_network_end(L);
    }
    return 0;
}

static int conn_tostring(lua_State *L) {
    lunatls_Conn *c = (lunatls_Conn *)luaL_checkudata(L, 1, LUNATLS_CONN);
    if (c->ssl == NULL) return lunatls_tostring_closed(L, LUNATLS_CONN);
    lua_pushfstring(L, "%s: %p (%s, %s)", LUNATLS_CONN, (void *)c,
                    c->is_server ? "server" : "client",
                    handshake_done(c) ? "handshake done" : "handshake not done");
    return 1;
}

void lunatls_open_conn(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"do_handshake", conn_do_handshake},
        {"read", conn_read},
        {"read_into", conn_read_into},
        {"write", conn_write},
        {"shutdown", conn_shutdown},
        {"close", conn_close},
        {"set_connect_state", conn_set_connect_state},
        {"set_accept_state", conn_set_accept_state},
        {"key_update", conn_key_update},
        {"version", conn_version},
        {"cipher", conn_cipher},
        {"alpn_selected", conn_alpn_selected},
        {"server_name", conn_server_name},
        {"peer_certificate", conn_peer_certificate},
        {"peer_chain", conn_peer_chain},
        {"verify_result", conn_verify_result},
        {"session", conn_session},
        {"session_reused", conn_session_reused},
        {"export_keying_material", conn_export_keying_material},
        {"pending", conn_pending},
        {"has_pending", conn_has_pending},
        {"bio", conn_bio},
        {"client_hello", lunatls_conn_client_hello},
        {"channel_binding", lunatls_conn_channel_binding},
        {"group", conn_group},
        {"verify_client_post_handshake", conn_verify_client_post_handshake},
        {"ocsp_status", lunatls_conn_ocsp_status},
        {"set_context", lunatls_conn_set_context},
        {NULL, NULL},
    };
    static const luaL_Reg metamethods[] = {
        {"__gc", conn_close},
        {"__close", conn_close},
        {"__tostring", conn_tostring},
        {NULL, NULL},
    };
    lunatls_newclass(L, LUNATLS_CONN, methods, metamethods);
}
