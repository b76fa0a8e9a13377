/* The server's ClientHello: read by lunatls before OpenSSL decides anything.
 *
 * OpenSSL's servername callback runs too late to choose a context safely:
 * by then it has fixed the version, (TLS 1.3) the cipher suite, and whether
 * to resume a session, all under the first context's policy; on a TLS 1.2
 * resumption it even reports the old session's name. The ClientHello
 * callback runs first. There lunatls takes the SNI from the raw extension
 * and chooses the context: with the `servername` function, or, for a
 * context made with client_hello = true, by pausing the handshake
 * (do_handshake() says "want_certificate") until the application has
 * called conn:set_context. The chosen context's whole policy applies
 * (context.c: lunatls_adopt_context), and resumption is bound to the chosen
 * context and name (lunatls_bind_sessions). */
#include "lunatls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/tls1.h>

/* What the callback learns from one ClientHello. */
typedef struct {
    const unsigned char *name; /* the SNI; NULL: none */
    size_t len;
    int alert;                 /* set when the handshake must stop */
    int pause;                 /* the context pauses for conn:set_context */
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

/* ---- the ClientHello as a table, for conn:client_hello() ---- */

/* The body of extension `type` after its length prefix of `prefix` bytes,
 * when that prefix is right; NULL otherwise. */
static const unsigned char *extension_list(SSL *ssl, unsigned int type, size_t prefix,
                                           size_t *len) {
    const unsigned char *p;
    size_t n, said;
    if (!SSL_client_hello_get0_ext(ssl, type, &p, &n) || n < prefix) return NULL;
    said = prefix == 1 ? p[0] : be16(p);
    if (said != n - prefix) return NULL;
    *len = said;
    return p + prefix;
}

static const char *version_name(unsigned int v) {
    switch (v) {
    case TLS1_3_VERSION: return "TLSv1.3";
    case TLS1_2_VERSION: return "TLSv1.2";
    case TLS1_1_VERSION: return "TLSv1.1";
    case TLS1_VERSION: return "TLSv1";
    default: return NULL; /* GREASE and the unknown */
    }
}

/* TLS SignatureScheme names (RFC 8446 4.2.3) of the schemes OpenSSL knows. */
static const char *sigalg_name(unsigned int v) {
    static const struct { unsigned int code; const char *name; } schemes[] = {
        {0x0401, "rsa_pkcs1_sha256"}, {0x0501, "rsa_pkcs1_sha384"}, {0x0601, "rsa_pkcs1_sha512"},
        {0x0403, "ecdsa_secp256r1_sha256"}, {0x0503, "ecdsa_secp384r1_sha384"},
        {0x0603, "ecdsa_secp521r1_sha512"}, {0x0804, "rsa_pss_rsae_sha256"},
        {0x0805, "rsa_pss_rsae_sha384"}, {0x0806, "rsa_pss_rsae_sha512"}, {0x0807, "ed25519"},
        {0x0808, "ed448"}, {0x0809, "rsa_pss_pss_sha256"}, {0x080a, "rsa_pss_pss_sha384"},
        {0x080b, "rsa_pss_pss_sha512"}, {0x0201, "rsa_pkcs1_sha1"}, {0x0203, "ecdsa_sha1"},
    };
    size_t i;
    for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (schemes[i].code == v) return schemes[i].name;
    return NULL;
}

/* Sets field `name` of the table on the stack top to the list of 2-byte
 * codes in extension `type`, each named by `namer` (codes it does not know
 * are left out, or given as "0x0a0b" when `hex`). */
static void set_code_list(lua_State *L, SSL *ssl, const char *field, unsigned int type,
                          size_t prefix, const char *(*namer)(SSL *, unsigned int), int hex) {
    size_t i, n = 0;
    const unsigned char *p = extension_list(ssl, type, prefix, &n);
    int k = 0;
    lua_newtable(L);
    for (i = 0; p != NULL && i + 1 < n; i += 2) {
        unsigned int code = be16(p + i);
        const char *name = namer(ssl, code);
        char text[8];
        if (name == NULL && hex) {
            snprintf(text, sizeof text, "0x%04x", code);
            name = text;
        }
        if (name == NULL) continue;
        lua_pushstring(L, name);
        lua_rawseti(L, -2, ++k);
    }
    lua_setfield(L, -2, field);
}

static const char *name_version(SSL *ssl, unsigned int v) {
    (void)ssl;
    return version_name(v);
}

/* OpenSSL takes a NID here, or a TLS group id marked as one */
static const char *name_group(SSL *ssl, unsigned int v) {
    return SSL_group_to_name(ssl, (int)(TLSEXT_nid_unknown | v));
}

static const char *name_sigalg(SSL *ssl, unsigned int v) {
    (void)ssl;
    return sigalg_name(v);
}

/* The protocols the client offers (ALPN, RFC 7301), in its order. */
/* Pushes the list of names in ALPN wire format. */
static void push_wire_list(lua_State *L, const unsigned char *p, size_t n) {
    size_t i, len;
    int k = 0;
    lua_newtable(L);
    for (i = 0; i < n; i += 1 + len) {
        len = p[i];
        if (len == 0 || i + 1 + len > n) break;
        lua_pushlstring(L, (const char *)p + i + 1, len);
        lua_rawseti(L, -2, ++k);
    }
}

static void set_alpn_offer(lua_State *L, SSL *ssl) {
    size_t n = 0;
    const unsigned char *p = extension_list(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation,
                                            2, &n);
    push_wire_list(L, p, p != NULL ? n : 0);
    lua_setfield(L, -2, "alpn");
}

/* The cipher suites the client offers that OpenSSL knows, by OpenSSL's
 * names (as conn:cipher() gives them). */
static void set_ciphers(lua_State *L, SSL *ssl) {
    const unsigned char *p;
    size_t i, n = SSL_client_hello_get0_ciphers(ssl, &p);
    int k = 0;
    lua_newtable(L);
    for (i = 0; i + 1 < n; i += 2) {
        const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, p + i);
        if (cipher == NULL) continue;
        lua_pushstring(L, SSL_CIPHER_get_name(cipher));
        lua_rawseti(L, -2, ++k);
    }
    lua_setfield(L, -2, "ciphers");
}

/* Pushes {server_name =, alpn =, versions =, ciphers =, groups =,
 * signature_algorithms =} of the ClientHello being processed. */
static void push_hello_table(lua_State *L, SSL *ssl, const Hello *h) {
    const char *legacy;
    lua_createtable(L, 0, 6);
    if (h->name != NULL) {
        lua_pushlstring(L, (const char *)h->name, h->len);
        lua_setfield(L, -2, "server_name");
    }
    set_alpn_offer(L, ssl);
    set_code_list(L, ssl, "versions", TLSEXT_TYPE_supported_versions, 1, name_version, 0);
    lua_getfield(L, -1, "versions");
    legacy = version_name((unsigned int)SSL_client_hello_get0_legacy_version(ssl));
    if (lua_rawlen(L, -1) == 0 && legacy != NULL) {
        lua_pushstring(L, legacy);
        lua_rawseti(L, -2, 1); /* no supported_versions: the legacy field says it */
    }
    lua_pop(L, 1);
    set_ciphers(L, ssl);
    set_code_list(L, ssl, "groups", TLSEXT_TYPE_supported_groups, 2, name_group, 0);
    set_code_list(L, ssl, "signature_algorithms", TLSEXT_TYPE_signature_algorithms, 2,
                  name_sigalg, 1);
}

/* ---- choosing the context ---- */

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
 * for (conn:server_name()); then either records the whole ClientHello for
 * a pause, or runs the servername function. */
static int hello_protected(lua_State *L) {
    lunatls_Conn *c = (lunatls_Conn *)lua_touserdata(L, 1);
    Hello *h = (Hello *)lua_touserdata(L, 2);
    if (h->name != NULL) lua_pushlstring(L, (const char *)h->name, h->len);
    else lua_pushnil(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, CONN_UV_SERVER_NAME);
    if (h->pause) {
        push_hello_table(L, c->ssl, h);
        lua_setiuservalue(L, 1, CONN_UV_HELLO);
    } else if (lunatls_push_callback(L, "servername")) {
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

/* The context is chosen: bind resumption to it and to the name. */
static int chosen(SSL *ssl, lunatls_Conn *c, const Hello *h) {
    c->hello = HELLO_CHOSEN;
    return lunatls_bind_sessions(ssl, (const char *)h->name, h->len) ? SSL_CLIENT_HELLO_SUCCESS
                                                                     : SSL_CLIENT_HELLO_ERROR;
}

/* The first ClientHello: record it, then pause or let servername choose. */
static int first_hello(SSL *ssl, lunatls_Conn *c, Hello *h, int *alert) {
    h->pause = lunatls_context_pauses(SSL_get_SSL_CTX(ssl));
    if (!lunatls_call_protected(c, hello_protected, h)) return SSL_CLIENT_HELLO_ERROR;
    if (h->alert != 0) {
        *alert = h->alert;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (h->pause) {
        c->hello = HELLO_PAUSED;
        return SSL_CLIENT_HELLO_RETRY; /* do_handshake: "want_certificate" */
    }
    return chosen(ssl, c, h);
}

int lunatls_client_hello_callback(SSL *ssl, int *alert, void *arg) {
    lunatls_Conn *c = lunatls_callback_conn(ssl);
    Hello h = {NULL, 0, 0, 0};
    (void)arg;
    *alert = SSL_AD_INTERNAL_ERROR;
    if (c == NULL) return SSL_CLIENT_HELLO_ERROR; /* no Lua thread: refuse */
    if (!read_sni(ssl, &h)) {
        *alert = h.alert;
        return SSL_CLIENT_HELLO_ERROR;
    }
    switch (c->hello) {
    case HELLO_NONE:
        return first_hello(ssl, c, &h, alert);
    case HELLO_PAUSED: /* the same ClientHello, after conn:set_context (or none) */
        return chosen(ssl, c, &h);
    case HELLO_REFUSED:
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    default:
        if (same_name(c, &h)) return SSL_CLIENT_HELLO_SUCCESS;
        *alert = SSL_AD_ILLEGAL_PARAMETER;
        return SSL_CLIENT_HELLO_ERROR;
    }
}

/* OpenSSL's servername callback, after the choice is made: accepting the
 * name acknowledges it to the client and stores it in a new session. */
int lunatls_ack_servername(SSL *ssl, int *alert, void *arg) {
    (void)ssl, (void)alert, (void)arg;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- ALPN chosen by a function (option alpn = function(offered)) ---- */

typedef struct {
    const unsigned char *in; /* the client's list, wire format */
    unsigned int inlen;
    const unsigned char *out; /* the chosen name, inside `in` */
    unsigned char outlen;
    int result; /* SSL_TLSEXT_ERR_* */
} AlpnChoice;

/* Points the choice at `name` in the client's list; 0 if it is not there. */
static int find_offered(AlpnChoice *a, const char *name, size_t name_len) {
    size_t i, len;
    for (i = 0; i < a->inlen; i += 1 + len) {
        len = a->in[i];
        if (i + 1 + len > a->inlen) return 0;
        if (len == name_len && memcmp(a->in + i + 1, name, len) == 0) {
            a->out = a->in + i + 1;
            a->outlen = (unsigned char)len;
            return 1;
        }
    }
    return 0;
}

/* alpn(offered), protected: 1 the Conn, 2 the AlpnChoice. The function
 * returns one of the offered names, nil (no ALPN) or false (refuse the
 * client: alert no_application_protocol). */
static int alpn_protected(lua_State *L) {
    AlpnChoice *a = (AlpnChoice *)lua_touserdata(L, 2);
    size_t len;
    const char *name;
    if (!lunatls_push_callback(L, "alpn")) return 0; /* the chosen context has a list */
    push_wire_list(L, a->in, a->inlen);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) return 0;
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        a->result = SSL_TLSEXT_ERR_ALERT_FATAL;
        return 0;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "alpn function must return an offered name, nil or false, not %s",
                          luaL_typename(L, -1));
    name = lua_tolstring(L, -1, &len);
    if (!find_offered(a, name, len))
        return luaL_error(L, "alpn function returned %s, which the client did not offer",
                          lunatls_push_quoted(L, name, len));
    a->result = SSL_TLSEXT_ERR_OK;
    return 0;
}

int lunatls_alpn_callback(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg) {
    lunatls_Conn *c = lunatls_callback_conn(ssl);
    AlpnChoice a = {in, inlen, NULL, 0, SSL_TLSEXT_ERR_NOACK};
    (void)arg;
    if (c == NULL || !lunatls_call_protected(c, alpn_protected, &a)) return SSL_TLSEXT_ERR_ALERT_FATAL;
    if (a.result == SSL_TLSEXT_ERR_OK) { /* OpenSSL copies the name at once */
        *out = a.out;
        *outlen = a.outlen;
    }
    return a.result;
}

/* ---- methods ---- */

/* conn:client_hello() -> the table of the ClientHello the handshake paused
 * on (client_hello = true), or nil. */
int lunatls_conn_client_hello(lua_State *L) {
    lunatls_checkconn(L, 1);
    lua_getiuservalue(L, 1, CONN_UV_HELLO);
    return 1;
}

/* conn:set_context(ctx | false) while do_handshake says "want_certificate":
 * the connection adopts the server context ctx, or refuses the client
 * (alert unrecognized_name); the next do_handshake goes on. */
int lunatls_conn_set_context(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn_idle(L);
    lunatls_Context *ctx;
    if (c->hello != HELLO_PAUSED && c->hello != HELLO_REFUSED)
        return luaL_error(L, "set_context: the handshake is not waiting for a certificate "
                             "(only after do_handshake() said \"want_certificate\")");
    if (lua_isboolean(L, 2) && !lua_toboolean(L, 2)) {
        c->hello = HELLO_REFUSED;
        return 0;
    }
    ctx = lunatls_checkcontext(L, 2);
    luaL_argcheck(L, ctx->is_server, 2, "a server context expected");
    lua_settop(L, 2);
    lua_setiuservalue(L, 1, CONN_UV_SNI_CONTEXT); /* the Conn holds what its SSL uses */
    c->hello = HELLO_PAUSED;
    if (!lunatls_adopt_context(c->ssl, ctx->ctx))
        return luaL_error(L, "set_context: %s", lunatls_last_reason());
    return 0;
}
