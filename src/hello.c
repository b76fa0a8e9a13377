/* The server's ClientHello: read by lunatls before OpenSSL decides anything.
 *
 * OpenSSL's servername callback runs too late to choose a context safely:
 * by then it has fixed the version, (TLS 1.3) the cipher suite, and whether
 * to resume a session, all under the first context's policy; on a TLS 1.2
 * resumption it even reports the old session's name. The ClientHello
 * callback runs first. There lunatls takes the SNI from the raw extension,
 * lets the `servername` function choose a context, applies that context's
 * whole policy (context.c: lunatls_adopt_context), and binds resumption to
 * the chosen context and name (lunatls_bind_sessions). */
#include "lunatls.h"

#include <string.h>

#include <openssl/tls1.h>

/* The host name a ClientHello asks for. */
typedef struct {
    const unsigned char *name; /* NULL: no SNI */
    size_t len;
    int alert; /* set when the handshake must stop */
} Hello;

static unsigned int be16(const unsigned char *p) {
    return (unsigned int)p[0] << 8 | p[1];
}

/* Reads the server_name extension as OpenSSL will accept it (RFC 6066 3:
 * one entry, a host_name of 1 to 255 bytes without NUL); sets h->alert and
 * returns 0 for one OpenSSL would refuse. */
static int read_sni(SSL *ssl, Hello *h) {
    const unsigned char *p;
    size_t n;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &n)) return 1;
    h->alert = SSL_AD_DECODE_ERROR;
    if (n < 5 || be16(p) != n - 2 || p[2] != TLSEXT_NAMETYPE_host_name || be16(p + 3) != n - 5)
        return 0;
    h->alert = SSL_AD_UNRECOGNIZED_NAME;
    if (n - 5 == 0 || n - 5 > TLSEXT_MAXLEN_host_name || memchr(p + 5, 0, n - 5) != NULL)
        return 0;
    h->alert = 0;
    h->name = p + 5;
    h->len = n - 5;
    return 1;
}

/* The servername function returns a server Context to switch to, nil to
 * keep this one, or false to refuse the name (alert unrecognized_name). */
static void apply_choice(lua_State *L, lunatls_Conn *c, Hello *h) {
    lunatls_Context *chosen;
    if (lua_isnil(L, -1)) return;
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        h->alert = SSL_AD_UNRECOGNIZED_NAME;
        return;
    }
    chosen = (lunatls_Context *)luaL_testudata(L, -1, LUNATLS_CONTEXT);
    if (chosen == NULL || chosen->ctx == NULL || !chosen->is_server)
        luaL_error(L, "servername callback must return a server lunatls.Context, nil or false");
    /* kept first: the Conn must hold what its SSL now uses */
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, CONN_UV_SNI_CONTEXT);
    if (!lunatls_adopt_context(c->ssl, chosen->ctx))
        luaL_error(L, "servername: cannot use the chosen context: %s", lunatls_last_reason());
}

/* Protected: 1 the Conn, 2 the Hello. Records the name the client asked
 * for (conn:server_name()) and runs the servername function. */
static int hello_protected(lua_State *L) {
    lunatls_Conn *c = (lunatls_Conn *)lua_touserdata(L, 1);
    Hello *h = (Hello *)lua_touserdata(L, 2);
    if (h->name != NULL) lua_pushlstring(L, (const char *)h->name, h->len);
    else lua_pushnil(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, CONN_UV_SERVER_NAME);
    if (lunatls_push_callback(L, c, "servername")) {
        lua_insert(L, -2);
        lua_call(L, 1, 1);
        apply_choice(L, c, h);
    }
    return 0;
}

/* A second ClientHello (after a HelloRetryRequest, or a TLS 1.2
 * renegotiation) must ask for the name the first one did: the context was
 * chosen for that name. Nothing here can raise. */
static int same_name(lunatls_Conn *c, const Hello *h) {
    lua_State *L = c->L;
    size_t len = 0;
    const char *first;
    int same;
    if (!lua_checkstack(L, 1)) return 0;
    lua_getiuservalue(L, 1, CONN_UV_SERVER_NAME);
    first = lua_tolstring(L, -1, &len); /* a string or nil: never converts */
    same = first == NULL ? h->name == NULL
                         : h->name != NULL && h->len == len && memcmp(first, h->name, len) == 0;
    lua_pop(L, 1);
    return same;
}

int lunatls_client_hello_callback(SSL *ssl, int *alert, void *arg) {
    lunatls_Conn *c = lunatls_callback_conn(ssl);
    Hello h = {NULL, 0, 0};
    (void)arg;
    *alert = SSL_AD_INTERNAL_ERROR;
    if (c == NULL) return SSL_CLIENT_HELLO_ERROR; /* no Lua thread: refuse */
    if (!read_sni(ssl, &h)) {
        *alert = h.alert;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (c->hellos++ > 0) {
        if (same_name(c, &h)) return SSL_CLIENT_HELLO_SUCCESS;
        *alert = SSL_AD_ILLEGAL_PARAMETER;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (!lunatls_call_protected(c, hello_protected, &h)) return SSL_CLIENT_HELLO_ERROR;
    if (h.alert != 0) {
        *alert = h.alert;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (!lunatls_bind_sessions(ssl, (const char *)h.name, h.len)) return SSL_CLIENT_HELLO_ERROR;
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* OpenSSL's servername callback, after the choice is made: accepting the
 * name acknowledges it to the client and stores it in a new session. */
int lunatls_ack_servername(SSL *ssl, int *alert, void *arg) {
    (void)ssl, (void)alert, (void)arg;
    return SSL_TLSEXT_ERR_OK;
}
