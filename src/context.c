/* lunatls.Context: an SSL_CTX, configured once from an options table.
 *
 * A context has no setters: everything is given to new_context, so it never
 * changes under the connections that use it. */
#define _POSIX_C_SOURCE 200809L /* stat */
#include "lunatls.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>

/* Options new_context knows; any other key is a typo and raises. */
static const char *const known_options[] = {
    "mode", "certificate", "key", "password", "ca", "cafile", "capath",
    "verify", "verify_depth", "verify_flags", "check_hostname",
    "min_version", "max_version", "ciphers", "ciphersuites", "groups",
    "alpn", "servername", "session_cache", "tickets", "keylog", NULL,
};

lunatls_Context *lunatls_checkcontext(lua_State *L, int idx) {
    return (lunatls_Context *)lunatls_checkopen(L, idx, LUNATLS_CONTEXT);
}

/* ---- reading the options table (always at index 1) ---- */

static int option_error(lua_State *L, const char *name, const char *expected) {
    const char *msg = lua_pushfstring(L, "option '%s': %s expected, got %s", name, expected,
                                      luaL_typename(L, -1));
    return luaL_argerror(L, 1, msg);
}

/* The option's string value (kept alive by the table), or NULL when absent. */
static const char *opt_string(lua_State *L, const char *name, size_t *len) {
    const char *s = NULL;
    if (lua_getfield(L, 1, name) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING) option_error(L, name, "string");
        s = lua_tolstring(L, -1, len);
    }
    lua_pop(L, 1);
    return s;
}

static int opt_boolean(lua_State *L, const char *name, int def) {
    int v = def;
    if (lua_getfield(L, 1, name) != LUA_TNIL) {
        if (!lua_isboolean(L, -1)) option_error(L, name, "boolean");
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static int opt_choice(lua_State *L, const char *name, const char *def,
                      const char *const choices[]) {
    const char *s = opt_string(L, name, NULL);
    int i;
    if (s == NULL) s = def;
    if (s == NULL) return luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' is required", name));
    for (i = 0; choices[i] != NULL; i++)
        if (strcmp(choices[i], s) == 0) return i;
    return luaL_argerror(L, 1, lua_pushfstring(L, "option '%s': invalid value '%s'", name, s));
}

/* Pushes the option if it is a function (or absent: nil); raises otherwise. */
static void opt_function(lua_State *L, const char *name) {
    int t = lua_getfield(L, 1, name);
    if (t != LUA_TNIL && t != LUA_TFUNCTION) option_error(L, name, "function");
}

static void check_known_options(lua_State *L) {
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        int i, known = 0;
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING)
            for (i = 0; known_options[i] != NULL && !known; i++)
                known = strcmp(known_options[i], lua_tostring(L, -1)) == 0;
        if (!known)
            luaL_argerror(L, 1, lua_pushfstring(L, "unknown option '%s'",
                                                luaL_tolstring(L, -1, NULL)));
    }
}

static int is_pem_text(const char *s) {
    return strstr(s, "-----BEGIN ") != NULL;
}

/* What a failure message names: the path, or "PEM text". */
static const char *source_name(const char *s) {
    return is_pem_text(s) ? "PEM text" : s;
}

static BIO *open_source(const char *s, size_t len) {
    if (is_pem_text(s)) return BIO_new_mem_buf(s, (int)len);
    return BIO_new_file(s, "r");
}

/* ---- certificates and keys ---- */

static int load_chain_pem(SSL_CTX *ctx, const char *pem, size_t len) {
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x;
    int ok = 0;
    if (bio == NULL) return 0;
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (x != NULL && SSL_CTX_use_certificate(ctx, x) == 1) {
        X509 *extra;
        ok = 1;
        SSL_CTX_clear_chain_certs(ctx);
        while (ok && (extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
            ok = SSL_CTX_add0_chain_cert(ctx, extra) == 1;
            if (!ok) X509_free(extra);
        }
        if (ok) ERR_clear_error(); /* the end of the text is not an error */
    }
    X509_free(x);
    BIO_free(bio);
    return ok;
}

static int set_certificate(lua_State *L, SSL_CTX *ctx) {
    size_t len;
    const char *s = opt_string(L, "certificate", &len);
    int ok;
    if (s == NULL) return 0;
    ok = is_pem_text(s) ? load_chain_pem(ctx, s, len)
                        : SSL_CTX_use_certificate_chain_file(ctx, s) == 1;
    return ok ? 0 : lunatls_config_error(L, "certificate", source_name(s));
}

/* Where the password callback finds the password option during new_context. */
typedef struct {
    lua_State *L;
    int failed; /* the password function raised: its error is on the stack top */
} PasswordSource;

/* OpenSSL's buffer for the password, and how much of it we filled. */
typedef struct {
    char *buf;
    int size;
    int len;
} PasswordRequest;

/* password_protected(opts, request): copies the password option, or what
 * the password function returns, into the request's buffer. */
static int password_protected(lua_State *L) {
    PasswordRequest *request = (PasswordRequest *)lua_touserdata(L, 2);
    size_t len;
    const char *pw;
    if (lua_getfield(L, 1, "password") == LUA_TFUNCTION) lua_call(L, 0, 1);
    pw = lua_tolstring(L, -1, &len);
    if (pw != NULL && len <= (size_t)request->size) {
        memcpy(request->buf, pw, len);
        request->len = (int)len;
    }
    return 0;
}

/* Runs inside PEM_read_bio_PrivateKey, where nothing may raise (not even
 * out of memory while converting the password to a string): everything
 * that touches Lua runs under lua_pcall, in password_protected. */
static int password_callback(char *buf, int size, int rwflag, void *userdata) {
    PasswordSource *src = (PasswordSource *)userdata;
    lua_State *L = src->L;
    PasswordRequest request = {buf, size, 0};
    (void)rwflag;
    if (src->failed || !lua_checkstack(L, 3)) return 0;
    lua_pushcfunction(L, password_protected);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, &request);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        src->failed = 1;
        return 0;
    }
    return request.len;
}

static int set_key(lua_State *L, SSL_CTX *ctx) {
    size_t len;
    const char *s = opt_string(L, "key", &len);
    PasswordSource src = {L, 0};
    EVP_PKEY *pkey = NULL;
    BIO *bio;
    int t = lua_getfield(L, 1, "password");
    if (t != LUA_TNIL && t != LUA_TSTRING && t != LUA_TFUNCTION)
        option_error(L, "password", "string or function"); /* names the value on top */
    lua_pop(L, 1);
    if (s == NULL) return 0;
    bio = open_source(s, len);
    /* Always pass a callback: without one OpenSSL prompts on the terminal. */
    if (bio != NULL) pkey = PEM_read_bio_PrivateKey(bio, NULL, password_callback, &src);
    BIO_free(bio);
    if (src.failed) {
        ERR_clear_error();
        return lua_error(L); /* the password function's own error */
    }
    if (pkey == NULL || SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
        EVP_PKEY_free(pkey);
        return lunatls_config_error(L, "key", source_name(s));
    }
    EVP_PKEY_free(pkey);
    if (SSL_CTX_get0_certificate(ctx) != NULL && SSL_CTX_check_private_key(ctx) != 1)
        return lunatls_config_error(L, "key", "does not match the certificate");
    return 0;
}

/* ---- trust ---- */

static int add_ca_pem(SSL_CTX *ctx, const char *pem, size_t len) {
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x;
    int added = 0, ok = 1;
    if (bio == NULL) return 0;
    while (ok && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        ok = X509_STORE_add_cert(store, x) == 1;
        X509_free(x);
        added++;
    }
    BIO_free(bio);
    if (ok && added > 0) ERR_clear_error();
    return ok && added > 0;
}

/* OpenSSL reads a capath lazily, at verify time, and never reports a missing
 * folder: look for it now, so a typo is a config error and not a mysterious
 * verify failure later. */
static int capath_error(lua_State *L, const char *capath) {
    struct stat st;
    if (stat(capath, &st) != 0)
        lua_pushfstring(L, "capath: %s: %s", capath, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        lua_pushfstring(L, "capath: %s: not a directory", capath);
    else
        return 0;
    return lunatls_fail(L, lua_tostring(L, -1), "config");
}

static int set_trust(lua_State *L, SSL_CTX *ctx, int verify) {
    size_t len;
    const char *ca = opt_string(L, "ca", &len);
    const char *cafile = opt_string(L, "cafile", NULL);
    const char *capath = opt_string(L, "capath", NULL);
    int failed;
    if (ca != NULL && !add_ca_pem(ctx, ca, len))
        return lunatls_config_error(L, "ca", "PEM text");
    if (cafile != NULL && SSL_CTX_load_verify_file(ctx, cafile) != 1)
        return lunatls_config_error(L, "cafile", cafile);
    if (capath != NULL && (failed = capath_error(L, capath)) != 0) return failed;
    if (capath != NULL && SSL_CTX_load_verify_dir(ctx, capath) != 1)
        return lunatls_config_error(L, "capath", capath);
    if (ca == NULL && cafile == NULL && capath == NULL && verify != SSL_VERIFY_NONE)
        SSL_CTX_set_default_verify_paths(ctx); /* the system store */
    ERR_clear_error(); /* a missing default store is found out at verify time */
    return 0;
}

static const char *const verify_choices[] = {"none", "peer", "require", NULL};

static unsigned long verify_flag(lua_State *L, const char *name) {
    static const char *const names[] = {"x509_strict", "partial_chain", NULL};
    static const unsigned long flags[] = {X509_V_FLAG_X509_STRICT, X509_V_FLAG_PARTIAL_CHAIN};
    int i;
    for (i = 0; names[i] != NULL; i++)
        if (strcmp(names[i], name) == 0) return flags[i];
    return (unsigned long)luaL_argerror(
        L, 1, lua_pushfstring(L, "option 'verify_flags': unknown flag '%s'", name));
}

static void set_verify_flags(lua_State *L, SSL_CTX *ctx) {
    lua_Integer i, n;
    unsigned long flags = 0;
    if (lua_getfield(L, 1, "verify_flags") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1)) option_error(L, "verify_flags", "table");
    n = luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
        if (lua_geti(L, -1, i) != LUA_TSTRING) option_error(L, "verify_flags", "list of strings");
        flags |= verify_flag(L, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), flags);
}

static int set_verify(lua_State *L, lunatls_Context *c) {
    int choice = opt_choice(L, "verify", c->is_server ? "none" : "peer", verify_choices);
    int mode = choice == 0 ? SSL_VERIFY_NONE : SSL_VERIFY_PEER;
    int check_hostname;
    if (c->is_server && choice == 2) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(c->ctx, mode, NULL);
    if (lua_getfield(L, 1, "verify_depth") != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 100)
            option_error(L, "verify_depth", "integer from 0 to 100");
        SSL_CTX_set_verify_depth(c->ctx, (int)lua_tointeger(L, -1));
    }
    lua_pop(L, 1);
    set_verify_flags(L, c->ctx);
    check_hostname = opt_boolean(L, "check_hostname", 1); /* type-checked in any mode */
    c->check_hostname = !c->is_server && mode != SSL_VERIFY_NONE && check_hostname;
    return set_trust(L, c->ctx, mode);
}

/* ---- protocol ---- */

static const char *const version_names[] = {"tls1.0", "tls1.1", "tls1.2", "tls1.3", NULL};
static const int version_numbers[] = {TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION,
                                      TLS1_3_VERSION};

static int set_versions(lua_State *L, SSL_CTX *ctx) {
    int min = version_numbers[opt_choice(L, "min_version", "tls1.2", version_names)];
    int max = 0; /* the highest OpenSSL supports */
    if (opt_string(L, "max_version", NULL) != NULL)
        max = version_numbers[opt_choice(L, "max_version", NULL, version_names)];
    if (max != 0 && max < min)
        return lunatls_fail(L, "max_version: lower than min_version", "config");
    if (!SSL_CTX_set_min_proto_version(ctx, min) || !SSL_CTX_set_max_proto_version(ctx, max))
        return lunatls_config_error(L, "min_version", NULL);
    return 0;
}

static int set_algorithms(lua_State *L, SSL_CTX *ctx) {
    const char *ciphers = opt_string(L, "ciphers", NULL);
    const char *suites = opt_string(L, "ciphersuites", NULL);
    const char *groups = opt_string(L, "groups", NULL);
    if (ciphers != NULL && SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
        return lunatls_config_error(L, "ciphers", ciphers);
    if (suites != NULL && SSL_CTX_set_ciphersuites(ctx, suites) != 1)
        return lunatls_config_error(L, "ciphersuites", suites);
    if (groups != NULL && SSL_CTX_set1_groups_list(ctx, groups) != 1)
        return lunatls_config_error(L, "groups", groups);
    return 0;
}

/* ---- ALPN ---- */

/* Pushes and returns the ALPN wire format (length-prefixed names) of the
 * list at idx, which is option `what` of argument argn. */
const char *lunatls_push_alpn_wire(lua_State *L, int idx, int argn, const char *what,
                                   size_t *len) {
    luaL_Buffer b;
    lua_Integer i, n = luaL_len(L, idx);
    luaL_buffinit(L, &b);
    for (i = 1; i <= n; i++) {
        size_t name_len = 0;
        const char *name = NULL;
        /* a number is not a name (lua_tolstring would quietly convert it) */
        if (lua_geti(L, idx, i) == LUA_TSTRING) name = lua_tolstring(L, -1, &name_len);
        if (name == NULL || name_len == 0 || name_len > 255)
            luaL_argerror(L, argn, lua_pushfstring(L, "option '%s': protocol names are "
                                                      "strings of 1 to 255 bytes", what));
        lua_pop(L, 1);
        luaL_addchar(&b, (char)name_len);
        luaL_addlstring(&b, name, name_len);
    }
    luaL_pushresult(&b);
    return lua_tolstring(L, -1, len);
}

/* Server: the first of our protocols (in our order) that the client offers. A
 * client that offers none of them gets no ALPN answer rather than an alert. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    lunatls_Context *c = (lunatls_Context *)arg;
    unsigned char *selected;
    (void)ssl;
    if (SSL_select_next_proto(&selected, outlen, c->alpn, c->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

static void set_alpn(lua_State *L, lunatls_Context *c) {
    size_t len;
    const char *wire;
    if (lua_getfield(L, 1, "alpn") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1)) option_error(L, "alpn", "list of strings");
    wire = lunatls_push_alpn_wire(L, lua_gettop(L), 1, "alpn", &len);
    if (c->is_server) {
        c->alpn = (unsigned char *)OPENSSL_memdup(wire, len);
        if (c->alpn == NULL && len > 0) luaL_error(L, "new_context: out of memory");
        c->alpn_len = (unsigned int)len;
        SSL_CTX_set_alpn_select_cb(c->ctx, select_alpn, c);
    } else if (SSL_CTX_set_alpn_protos(c->ctx, (const unsigned char *)wire,
                                       (unsigned int)len) != 0) {
        luaL_error(L, "new_context: out of memory");
    }
    lua_pop(L, 2);
}

/* ---- sessions and callbacks ---- */

static void set_sessions(lua_State *L, SSL_CTX *ctx, int is_server) {
    static const unsigned char id_context[] = "lunatls";
    int cache = opt_boolean(L, "session_cache", 1);
    int tickets = opt_boolean(L, "tickets", 1);
    if (!is_server) return;
    SSL_CTX_set_session_cache_mode(ctx, cache ? SSL_SESS_CACHE_SERVER : SSL_SESS_CACHE_OFF);
    if (!tickets) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    /* Resumption with client certificates needs a session id context. */
    SSL_CTX_set_session_id_context(ctx, id_context, sizeof id_context - 1);
}

/* Keeps the Lua callbacks in the context's uservalue table (at index ud). */
static void set_callbacks(lua_State *L, lunatls_Context *c, int ud) {
    lua_newtable(L);
    opt_function(L, "keylog");
    if (!lua_isnil(L, -1)) SSL_CTX_set_keylog_callback(c->ctx, lunatls_keylog_callback);
    lua_setfield(L, -2, "keylog");
    opt_function(L, "servername");
    if (!lua_isnil(L, -1)) {
        if (!c->is_server) luaL_argerror(L, 1, "option 'servername' is for servers");
        SSL_CTX_set_tlsext_servername_callback(c->ctx, lunatls_servername_callback);
    }
    lua_setfield(L, -2, "servername");
    lua_setiuservalue(L, ud, CTX_UV_CALLBACKS);
}

static const char *const mode_choices[] = {"client", "server", NULL};

/* Runs every configuration step; returns 0, or the number of results pushed
 * by the step that failed. */
static int configure(lua_State *L, lunatls_Context *c, int ud) {
    int n;
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    if ((n = set_versions(L, c->ctx)) != 0) return n;
    if ((n = set_algorithms(L, c->ctx)) != 0) return n;
    if ((n = set_certificate(L, c->ctx)) != 0) return n;
    if ((n = set_key(L, c->ctx)) != 0) return n;
    if ((n = set_verify(L, c)) != 0) return n;
    set_alpn(L, c);
    set_sessions(L, c->ctx, c->is_server);
    set_callbacks(L, c, ud);
    return 0;
}

/* new_context(opts) -> context, or nil, message, "config" */
static int context_new(lua_State *L) {
    lunatls_Context *c;
    int is_server, n;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    check_known_options(L);
    is_server = opt_choice(L, "mode", NULL, mode_choices) == 1;
    c = (lunatls_Context *)lua_newuserdatauv(L, sizeof *c, CTX_NUV);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, LUNATLS_CONTEXT);
    c->is_server = is_server;
    ERR_clear_error();
    c->ctx = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    if (c->ctx == NULL) return lunatls_config_error(L, "new_context", NULL);
    SSL_CTX_set_app_data(c->ctx, c);
    if ((n = configure(L, c, 2)) != 0) return n;
    lua_settop(L, 2);
    return 1;
}

static int context_gc(lua_State *L) {
    lunatls_Context *c = (lunatls_Context *)luaL_checkudata(L, 1, LUNATLS_CONTEXT);
    SSL_CTX_free(c->ctx);
    OPENSSL_free(c->alpn);
    c->ctx = NULL;
    c->alpn = NULL;
    return 0;
}

static int context_mode(lua_State *L) {
    lunatls_Context *c = lunatls_checkcontext(L, 1);
    lua_pushstring(L, c->is_server ? "server" : "client");
    return 1;
}

static int context_tostring(lua_State *L) {
    lunatls_Context *c = (lunatls_Context *)luaL_checkudata(L, 1, LUNATLS_CONTEXT);
    if (c->ctx == NULL) return lunatls_tostring_closed(L, LUNATLS_CONTEXT);
    lua_pushfstring(L, "%s: %p (%s)", LUNATLS_CONTEXT, (void *)c,
                    c->is_server ? "server" : "client");
    return 1;
}

void lunatls_open_context(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"new_conn", lunatls_conn_new},
        {"mode", context_mode},
        {NULL, NULL},
    };
    static const luaL_Reg metamethods[] = {
        {"__gc", context_gc},
        {"__tostring", context_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"new_context", context_new},
        {NULL, NULL},
    };
    lunatls_newclass(L, LUNATLS_CONTEXT, methods, metamethods);
    luaL_setfuncs(L, functions, 0);
}
