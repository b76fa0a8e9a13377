/* lunatls.Context: an SSL_CTX, configured once from an options table.
 *
 * A context has no setters: everything is given to new_context, so it never
 * changes under the connections that use it. A server connection may adopt
 * another context during its handshake (hello.c); lunatls_adopt_context is
 * the one place that says what adopting applies. */
#define _POSIX_C_SOURCE 200809L /* stat */
#include "lunatls.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

/* Options new_context knows; any other key is a typo and raises. */
static const char *const known_options[] = {
    "mode", "certificate", "key", "password", "ca", "cafile", "capath",
    "verify", "verify_depth", "verify_flags", "check_hostname",
    "min_version", "max_version", "ciphers", "ciphersuites", "groups",
    "alpn", "servername", "session_cache", "tickets", "keylog", "client_hello",
    "security_level", "sigalgs", "client_ca", "ticket_keys", "session_cache_size",
    "post_handshake_auth", "pkcs12", "crl", "ocsp", "ocsp_staple", NULL,
};

#define OPTS 1 /* the options table: argument 1, a snapshot (options.c) */

lunatls_Context *lunatls_checkcontext(lua_State *L, int idx) {
    return (lunatls_Context *)lunatls_checkopen(L, idx, LUNATLS_CONTEXT);
}

/* ---- what the SSL_CTX carries for its connections ----
 *
 * Kept in the SSL_CTX's ex_data and freed with it: a connection holds a
 * reference to its SSL_CTX, so this lives as long as any connection that
 * may read it, even when the Lua object was finalized first. */

/* OpenSSL 3.0's default key-exchange groups, to restore them on a switch. */
#define DEFAULT_GROUPS "x25519:secp256r1:x448:secp521r1:secp384r1:" \
                       "ffdhe2048:ffdhe3072:ffdhe4096:ffdhe6144:ffdhe8192"

static int data_index = -1;
static CRYPTO_ONCE data_index_once = CRYPTO_ONCE_STATIC_INIT;

static void free_data(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                      void *argp) {
    ContextData *d = (ContextData *)ptr;
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    if (d == NULL) return;
    OPENSSL_free(d->alpn);
    OPENSSL_free(d->ciphers);
    OPENSSL_free(d->ciphersuites);
    OPENSSL_free(d->groups);
    if (d->keylog_file != NULL) fclose(d->keylog_file);
    OPENSSL_clear_free(d->ticket_keys, d->ticket_key_count * sizeof *d->ticket_keys);
    OPENSSL_clear_free(d, sizeof *d);
}

static void new_data_index(void) {
    data_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_data);
}

ContextData *lunatls_context_data(const SSL_CTX *ctx) {
    return (ContextData *)SSL_CTX_get_ex_data(ctx, data_index);
}


static int attach_data(SSL_CTX *ctx) {
    ContextData *d = (ContextData *)OPENSSL_zalloc(sizeof *d);
    if (d == NULL) return 0;
    if (SSL_CTX_set_ex_data(ctx, data_index, d) != 1) {
        OPENSSL_free(d);
        return 0;
    }
    return RAND_bytes(d->secret, SECRET_LEN) == 1;
}

/* ---- certificates and keys ---- */

/* The first certificate is ours; the rest is the chain we send with it. */
static int use_chain(SSL_CTX *ctx, STACK_OF(X509) *certs) {
    int ok = SSL_CTX_use_certificate(ctx, sk_X509_value(certs, 0)) == 1 &&
             SSL_CTX_clear_chain_certs(ctx) == 1;
    int i;
    for (i = 1; ok && i < sk_X509_num(certs); i++) ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(certs, i)) == 1;
    return ok;
}

/* pkcs12: certificate, key and chain from one bundle. */
static int set_pkcs12(lua_State *L, SSL_CTX *ctx, const char *s, size_t len) {
    EVP_PKEY *pkey;
    STACK_OF(X509) *certs;
    int n, ok;
    if (lunatls_opt_source(L, OPTS, "certificate", NULL) != NULL ||
        lunatls_opt_source(L, OPTS, "key", NULL) != NULL)
        luaL_argerror(L, OPTS, "option 'pkcs12' replaces 'certificate' and 'key': give one or the other");
    if ((n = lunatls_load_pkcs12(L, s, len, &pkey, &certs)) != 0) return n;
    ok = use_chain(ctx, certs) && SSL_CTX_use_PrivateKey(ctx, pkey) == 1 &&
         SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(certs, X509_free);
    return ok ? 0 : lunatls_config_error(L, "pkcs12", lunatls_source_name(s, len, 1));
}

/* Our certificate and chain; or the whole identity from a PKCS#12 bundle. */
static int set_certificate(lua_State *L, SSL_CTX *ctx) {
    size_t len;
    const char *s = lunatls_opt_source(L, OPTS, "pkcs12", &len);
    STACK_OF(X509) *certs;
    int failed, ok;
    if (s != NULL) return set_pkcs12(L, ctx, s, len);
    if ((s = lunatls_opt_source(L, OPTS, "certificate", &len)) == NULL) return 0;
    if ((certs = lunatls_load_certificates(L, "certificate", s, len, 1, &failed)) == NULL) return failed;
    ok = use_chain(ctx, certs);
    sk_X509_pop_free(certs, X509_free);
    return ok ? 0 : lunatls_config_error(L, "certificate", lunatls_source_name(s, len, 1));
}

static int set_key(lua_State *L, SSL_CTX *ctx) {
    size_t len;
    const char *s = lunatls_opt_source(L, OPTS, "key", &len);
    EVP_PKEY *pkey;
    int failed, ok;
    lunatls_check_password(L);
    if (s == NULL) return 0;
    if ((pkey = lunatls_load_key(L, s, len, &failed)) == NULL) return failed;
    ok = SSL_CTX_use_PrivateKey(ctx, pkey) == 1;
    EVP_PKEY_free(pkey);
    if (!ok) return lunatls_config_error(L, "key", lunatls_source_name(s, len, 1));
    if (SSL_CTX_get0_certificate(ctx) != NULL && SSL_CTX_check_private_key(ctx) != 1)
        return lunatls_config_error(L, "key", "does not match the certificate");
    return 0;
}

/* ---- trust ---- */

static int add_ca(lua_State *L, SSL_CTX *ctx, const char *pem, size_t len) {
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509) *certs;
    int failed, i, ok = 1;
    if ((certs = lunatls_load_certificates(L, "ca", pem, len, 0, &failed)) == NULL) return failed;
    for (i = 0; ok && i < sk_X509_num(certs); i++) ok = X509_STORE_add_cert(store, sk_X509_value(certs, i)) == 1;
    sk_X509_pop_free(certs, X509_free);
    return ok ? 0 : lunatls_config_error(L, "ca", lua_pushfstring(L, "PEM text: entry %d", i));
}

/* Server: the CAs whose names a CertificateRequest lists (client_ca: PEM
 * text or a path), so that a client with several certificates picks one
 * these CAs issued. */
static int set_client_ca_names(lua_State *L, SSL_CTX *ctx) {
    size_t len;
    const char *s = lunatls_opt_source(L, OPTS, "client_ca", &len);
    STACK_OF(X509) *certs;
    int failed, i, ok = 1;
    if (s == NULL) return 0;
    if ((certs = lunatls_load_certificates(L, "client_ca", s, len, 1, &failed)) == NULL) return failed;
    for (i = 0; ok && i < sk_X509_num(certs); i++) ok = SSL_CTX_add_client_CA(ctx, sk_X509_value(certs, i)) == 1;
    sk_X509_pop_free(certs, X509_free);
    return ok ? 0 : lunatls_config_error(L, "client_ca", lunatls_source_name(s, len, 1));
}

static int set_trust(lua_State *L, SSL_CTX *ctx, int verify) {
    size_t len;
    const char *ca = lunatls_opt_source(L, OPTS, "ca", &len);
    const char *cafile = lunatls_opt_string(L, OPTS, "cafile", NULL);
    const char *capath = lunatls_opt_string(L, OPTS, "capath", NULL);
    int n;
    if (ca != NULL && (n = add_ca(L, ctx, ca, len)) != 0) return n;
    if (cafile != NULL && (n = lunatls_path_problem(L, "cafile", cafile, 0)) != 0) return n;
    if (cafile != NULL && SSL_CTX_load_verify_file(ctx, cafile) != 1)
        return lunatls_config_error(L, "cafile", cafile);
    /* OpenSSL reads a capath lazily and never reports a missing folder */
    if (capath != NULL && (n = lunatls_path_problem(L, "capath", capath, 1)) != 0) return n;
    if (capath != NULL && SSL_CTX_load_verify_dir(ctx, capath) != 1)
        return lunatls_config_error(L, "capath", capath);
    if (ca == NULL && cafile == NULL && capath == NULL && verify != SSL_VERIFY_NONE)
        SSL_CTX_set_default_verify_paths(ctx); /* the system store */
    ERR_clear_error(); /* a missing default store is found out at verify time */
    if ((n = lunatls_set_crls(L, ctx, OPTS)) != 0) return n;
    return set_client_ca_names(L, ctx);
}

static const char *const verify_choices[] = {"none", "peer", "require", NULL};
static const char *const flag_names[] = {"x509_strict", "partial_chain", "crl_check",
                                         "crl_check_all", NULL};
static const unsigned long flag_values[] = {X509_V_FLAG_X509_STRICT, X509_V_FLAG_PARTIAL_CHAIN,
                                            X509_V_FLAG_CRL_CHECK,
                                            X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL};

static void set_verify_flags(lua_State *L, SSL_CTX *ctx) {
    lua_Integer i, n = lunatls_opt_list(L, OPTS, "verify_flags");
    unsigned long flags = 0;
    if (n < 0) return;
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *name;
        lua_rawgeti(L, -1, i);
        name = lua_tolstring(L, -1, &len);
        flags |= flag_values[lunatls_choice(L, OPTS, "verify_flags", name, len, flag_names)];
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), flags);
}

static void set_verify_depth(lua_State *L, SSL_CTX *ctx) {
    if (lunatls_opt_push(L, OPTS, "verify_depth", LUA_TNUMBER, "integer from 0 to 100")) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 100)
            lunatls_opt_type_error(L, OPTS, "verify_depth", "integer from 0 to 100");
        SSL_CTX_set_verify_depth(ctx, (int)lua_tointeger(L, -1));
    }
    lua_pop(L, 1);
}

static int set_verify(lua_State *L, lunatls_Context *c) {
    int choice = lunatls_opt_choice(L, OPTS, "verify", c->is_server ? "none" : "peer",
                                    verify_choices);
    int mode = choice == 0 ? SSL_VERIFY_NONE : SSL_VERIFY_PEER;
    int check_hostname;
    if (c->is_server && choice == 2) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(c->ctx, mode, NULL);
    set_verify_depth(L, c->ctx);
    set_verify_flags(L, c->ctx);
    check_hostname = lunatls_opt_boolean(L, OPTS, "check_hostname", 1); /* checked in any mode */
    c->check_hostname = !c->is_server && mode != SSL_VERIFY_NONE && check_hostname;
    return set_trust(L, c->ctx, mode);
}

/* ---- protocol ---- */

/* Our names, and OpenSSL's as conn:version() returns them. */
static const char *const version_names[] = {"tls1.0", "tls1.1", "tls1.2", "tls1.3", "TLSv1",
                                            "TLSv1.1", "TLSv1.2", "TLSv1.3", NULL};
static const int version_numbers[] = {TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION,
                                      TLS1_3_VERSION};

static int version_option(lua_State *L, const char *name, const char *def) {
    return version_numbers[lunatls_opt_choice(L, OPTS, name, def, version_names) % 4];
}

static int set_versions(lua_State *L, SSL_CTX *ctx) {
    int min = version_option(L, "min_version", "tls1.2");
    int max = 0; /* the highest OpenSSL supports */
    if (lunatls_opt_string(L, OPTS, "max_version", NULL) != NULL)
        max = version_option(L, "max_version", NULL);
    if (max != 0 && max < min)
        return lunatls_fail(L, "max_version: lower than min_version", "config");
    if (!SSL_CTX_set_min_proto_version(ctx, min) || !SSL_CTX_set_max_proto_version(ctx, max))
        return lunatls_config_error(L, "min_version", NULL);
    return 0;
}

/* Keeps a copy of list (or of the default) in *slot, for adopting later. */
static void keep_list(lua_State *L, char **slot, const char *list, const char *def) {
    *slot = OPENSSL_strdup(list != NULL ? list : def);
    if (*slot == NULL) luaL_error(L, "new_context: out of memory");
}

/* sigalgs (what we accept and sign with) and security_level (OpenSSL's
 * floor on key sizes and algorithms, 0 to 5). */
static int set_signature_policy(lua_State *L, SSL_CTX *ctx) {
    const char *sigalgs = lunatls_opt_string(L, OPTS, "sigalgs", NULL);
    if (lunatls_opt_push(L, OPTS, "security_level", LUA_TNUMBER, "integer from 0 to 5")) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 5)
            lunatls_opt_type_error(L, OPTS, "security_level", "integer from 0 to 5");
        SSL_CTX_set_security_level(ctx, (int)lua_tointeger(L, -1));
    }
    lua_pop(L, 1);
    if (sigalgs != NULL && (SSL_CTX_set1_sigalgs_list(ctx, sigalgs) != 1 ||
                            SSL_CTX_set1_client_sigalgs_list(ctx, sigalgs) != 1))
        return lunatls_config_error(L, "sigalgs", sigalgs);
    return 0;
}

static int set_algorithms(lua_State *L, SSL_CTX *ctx) {
    ContextData *d = lunatls_context_data(ctx);
    int n;
    const char *ciphers = lunatls_opt_string(L, OPTS, "ciphers", NULL);
    const char *suites = lunatls_opt_string(L, OPTS, "ciphersuites", NULL);
    const char *groups = lunatls_opt_string(L, OPTS, "groups", NULL);
    if (ciphers != NULL && SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
        return lunatls_config_error(L, "ciphers", ciphers);
    if (suites != NULL && SSL_CTX_set_ciphersuites(ctx, suites) != 1)
        return lunatls_config_error(L, "ciphersuites", suites);
    if (groups != NULL && SSL_CTX_set1_groups_list(ctx, groups) != 1)
        return lunatls_config_error(L, "groups", groups);
    keep_list(L, &d->ciphers, ciphers, OSSL_default_cipher_list());
    if ((n = set_signature_policy(L, ctx)) != 0) return n;
    keep_list(L, &d->ciphersuites, suites, OSSL_default_ciphersuites());
    keep_list(L, &d->groups, groups, DEFAULT_GROUPS);
    return 0;
}

/* ---- ALPN ---- */

/* Pushes and returns the ALPN wire format (length-prefixed names) of the
 * list at index list, a plain copy made by lunatls_opt_list of option
 * 'alpn' of argument arg. */
const char *lunatls_push_alpn_wire(lua_State *L, int list, int arg, size_t *len) {
    luaL_Buffer b;
    lua_Integer i, n = (lua_Integer)lua_rawlen(L, list);
    for (i = 1; i <= n; i++) { /* checked before the buffer takes the stack */
        size_t name_len;
        lua_rawgeti(L, list, i);
        lua_tolstring(L, -1, &name_len);
        lua_pop(L, 1);
        if (name_len == 0 || name_len > 255)
            luaL_argerror(L, arg, "option 'alpn': protocol names are strings of 1 to 255 bytes");
    }
    luaL_buffinit(L, &b);
    for (i = 1; i <= n; i++) {
        size_t name_len;
        const char *name;
        lua_rawgeti(L, list, i);
        name = lua_tolstring(L, -1, &name_len);
        lua_pop(L, 1); /* anchored by the list, which is a plain table on the stack */
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
    const ContextData *d = lunatls_context_data(SSL_get_SSL_CTX(ssl));
    unsigned char *selected;
    (void)arg;
    if (d == NULL || d->alpn == NULL ||
        SSL_select_next_proto(&selected, outlen, d->alpn, d->alpn_len, in, inlen) !=
            OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

/* A server's alpn may be a function(offered) choosing for each client
 * (hello.c); it is kept with the other callbacks (set_callbacks). */
static int alpn_is_function(lua_State *L, lunatls_Context *c) {
    int t;
    lua_pushliteral(L, "alpn");
    t = lua_rawget(L, OPTS);
    lua_pop(L, 1);
    if (t != LUA_TFUNCTION) return 0;
    if (!c->is_server) luaL_argerror(L, OPTS, "option 'alpn': a function is for servers");
    SSL_CTX_set_alpn_select_cb(c->ctx, lunatls_alpn_callback, NULL);
    return 1;
}

static void set_alpn(lua_State *L, lunatls_Context *c) {
    size_t len;
    const char *wire;
    ContextData *d = lunatls_context_data(c->ctx);
    if (alpn_is_function(L, c) || lunatls_opt_list(L, OPTS, "alpn") < 0) return;
    wire = lunatls_push_alpn_wire(L, lua_gettop(L), OPTS, &len);
    if (c->is_server) {
        d->alpn = (unsigned char *)OPENSSL_memdup(wire, len);
        if (d->alpn == NULL && len > 0) luaL_error(L, "new_context: out of memory");
        d->alpn_len = (unsigned int)len;
        SSL_CTX_set_alpn_select_cb(c->ctx, select_alpn, NULL);
    } else if (SSL_CTX_set_alpn_protos(c->ctx, (const unsigned char *)wire,
                                       (unsigned int)len) != 0) {
        luaL_error(L, "new_context: out of memory");
    }
    lua_pop(L, 2);
}

/* ---- sessions and callbacks ---- */

/* Client: offer TLS 1.3 post-handshake authentication (the server may then
 * ask for our certificate at any time: conn:verify_client_post_handshake). */
static void set_post_handshake_auth(lua_State *L, lunatls_Context *c) {
    if (!lunatls_opt_boolean(L, OPTS, "post_handshake_auth", 0)) return;
    if (c->is_server) luaL_argerror(L, OPTS, "option 'post_handshake_auth' is for clients");
    SSL_CTX_set_post_handshake_auth(c->ctx, 1);
}

static void set_client_hello(lua_State *L, lunatls_Context *c) {
    int pause = lunatls_opt_boolean(L, OPTS, "client_hello", 0);
    if (pause && !c->is_server) luaL_argerror(L, OPTS, "option 'client_hello' is for servers");
    lunatls_context_data(c->ctx)->client_hello = pause;
}

/* With shared ticket keys, sessions must resume in another process's
 * context configured the same way: the secret that binds sessions to a
 * context (lunatls_bind_sessions) is then a digest of the configuration
 * (every option but the password and the keys, functions by type only, in
 * a fixed order) instead
 * of random bytes. Contexts that differ in any setting still never share
 * sessions. */
/* Pushes option `name` as text for the digest: "<type>:<value>", a list's
 * entries each followed by a NUL; a function as its type alone. */
static void push_option_text(lua_State *L, const char *name) {
    luaL_Buffer b;
    int value;
    lua_getfield(L, OPTS, name);
    value = lua_gettop(L);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, luaL_typename(L, value));
    luaL_addchar(&b, ':');
    if (lua_istable(L, value)) {
        lua_Integer k, count = (lua_Integer)lua_rawlen(L, value);
        for (k = 1; k <= count; k++) {
            lua_rawgeti(L, value, k);
            luaL_addvalue(&b);
            luaL_addchar(&b, '\0');
        }
    } else if (lua_isboolean(L, value)) {
        luaL_addstring(&b, lua_toboolean(L, value) ? "true" : "false");
    } else if (lua_type(L, value) == LUA_TSTRING || lua_type(L, value) == LUA_TNUMBER) {
        lua_pushvalue(L, value);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_remove(L, value);
}

static void derive_secret(lua_State *L, SSL_CTX *ctx) {
    unsigned int len = 0;
    size_t n;
    const char *text;
    int i, pushed = 0;
    for (i = 0; known_options[i] != NULL; i++) {
        if (strcmp(known_options[i], "password") == 0 || strcmp(known_options[i], "ticket_keys") == 0)
            continue; /* a secret, and keys that rotate */
        luaL_checkstack(L, 2, "new_context");
        lua_pushstring(L, known_options[i]);
        push_option_text(L, known_options[i]);
        pushed += 2;
    }
    lua_concat(L, pushed);
    text = lua_tolstring(L, -1, &n);
    if (EVP_Digest(text, n, lunatls_context_data(ctx)->secret, &len, EVP_sha256(), NULL) != 1)
        luaL_error(L, "new_context: out of memory");
    lua_pop(L, 1);
}

static void set_sessions(lua_State *L, SSL_CTX *ctx, int is_server) {
    int cache = lunatls_opt_boolean(L, OPTS, "session_cache", 1);
    int tickets = lunatls_opt_boolean(L, OPTS, "tickets", 1);
    lua_Integer size = 0;
    if (lunatls_opt_push(L, OPTS, "session_cache_size", LUA_TNUMBER, "integer from 1")) {
        size = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
        if (size < 1 || size > LONG_MAX)
            lunatls_opt_type_error(L, OPTS, "session_cache_size", "integer from 1");
    }
    lua_pop(L, 1);
    if (!is_server) {
        lua_pushliteral(L, "ticket_keys");
        if (lua_rawget(L, OPTS) != LUA_TNIL) luaL_argerror(L, OPTS, "option 'ticket_keys' is for servers");
        lua_pop(L, 1);
        return;
    }
    SSL_CTX_set_session_cache_mode(ctx, cache ? SSL_SESS_CACHE_SERVER : SSL_SESS_CACHE_OFF);
    if (size > 0) SSL_CTX_sess_set_cache_size(ctx, (long)size);
    if (!tickets) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (lunatls_set_ticket_keys(L, ctx, OPTS)) derive_secret(L, ctx);
    /* Resumption with client certificates needs a session id context; each
     * handshake replaces it by one bound to the server name (hello.c). */
    SSL_CTX_set_session_id_context(ctx, lunatls_context_data(ctx)->secret, SECRET_LEN);
}

/* keylog = "env": NSS key-log lines appended to the file $SSLKEYLOGFILE
 * names, if it is set when the context is made; never without the opt-in. */
static void keylog_to_file(const SSL *ssl, const char *line) {
    const ContextData *d = lunatls_context_data(SSL_get_SSL_CTX(ssl));
    if (d == NULL || d->keylog_file == NULL) return;
    fprintf(d->keylog_file, "%s\n", line);
    fflush(d->keylog_file);
}

/* Returns whether keylog is "env" (and opens the file); raises for another string. */
static int keylog_from_env(lua_State *L, SSL_CTX *ctx) {
    static const char *const choices[] = {"env", NULL};
    const char *path;
    size_t len;
    const char *s;
    lua_pushliteral(L, "keylog");
    if (lua_rawget(L, OPTS) != LUA_TSTRING) {
        lua_pop(L, 1);
        return 0;
    }
    s = lua_tolstring(L, -1, &len);
    lunatls_choice(L, OPTS, "keylog", s, len, choices);
    lua_pop(L, 1);
    path = getenv("SSLKEYLOGFILE");
    if (path != NULL && path[0] != '\0') {
        lunatls_context_data(ctx)->keylog_file = fopen(path, "a");
        if (lunatls_context_data(ctx)->keylog_file != NULL) SSL_CTX_set_keylog_callback(ctx, keylog_to_file);
    }
    return 1;
}

/* Pushes the option if it is a function (or absent: nil); raises otherwise. */
static void push_function(lua_State *L, const char *name) {
    lunatls_opt_push(L, OPTS, name, LUA_TFUNCTION, "function");
}

/* Keeps the Lua callbacks in the context's uservalue table (at index ud).
 * Every server context reads the ClientHello itself (hello.c): the SNI,
 * the servername callback and the sessions' binding happen there, before
 * OpenSSL picks the version, the cipher or a session to resume. */
static void set_callbacks(lua_State *L, lunatls_Context *c, int ud) {
    lua_newtable(L);
    if (!keylog_from_env(L, c->ctx)) {
        push_function(L, "keylog");
        if (!lua_isnil(L, -1)) SSL_CTX_set_keylog_callback(c->ctx, lunatls_keylog_callback);
        lua_setfield(L, -2, "keylog");
    }
    push_function(L, "servername");
    if (!lua_isnil(L, -1) && !c->is_server)
        luaL_argerror(L, OPTS, "option 'servername' is for servers");
    if (!lua_isnil(L, -1) && lunatls_context_data(c->ctx)->client_hello)
        luaL_argerror(L, OPTS, "options 'servername' and 'client_hello' exclude each other "
                               "(choose the context during the pause: conn:set_context)");
    lua_setfield(L, -2, "servername");
    lua_pushliteral(L, "alpn");
    if (lua_rawget(L, OPTS) != LUA_TFUNCTION) lua_pop(L, 1);
    else lua_setfield(L, -2, "alpn");
    lua_getfield(L, OPTS, "ocsp_staple"); /* a response or a function (revocation.c) */
    lua_setfield(L, -2, "ocsp_staple");
    lua_setiuservalue(L, ud, CTX_UV_CALLBACKS);
    if (c->is_server) {
        SSL_CTX_set_client_hello_cb(c->ctx, lunatls_client_hello_callback, NULL);
        SSL_CTX_set_tlsext_servername_callback(c->ctx, lunatls_ack_servername);
    }
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
    set_client_hello(L, c);
    set_post_handshake_auth(L, c);
    lunatls_set_ocsp(L, c, OPTS);
    set_callbacks(L, c, ud);
    return 0;
}

/* new_context(opts) -> context, or nil, message, "config" */
static int context_new(lua_State *L) {
    lunatls_Context *c;
    int is_server, n;
    lua_settop(L, 1);
    lunatls_options_snapshot(L, OPTS, known_options);
    is_server = lunatls_opt_choice(L, OPTS, "mode", NULL, mode_choices) == 1;
    c = (lunatls_Context *)lua_newuserdatauv(L, sizeof *c, CTX_NUV);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, LUNATLS_CONTEXT);
    c->is_server = is_server;
    ERR_clear_error();
    c->ctx = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    if (c->ctx == NULL) return lunatls_config_error(L, "new_context", NULL);
    if (!attach_data(c->ctx)) return luaL_error(L, "new_context: out of memory");
    if ((n = configure(L, c, 2)) != 0) return n;
    lua_settop(L, 2);
    return 1;
}

/* ---- adopting a context during a handshake (hello.c) ---- */

/* Copies the chosen context's verification parameters over the SSL's, all
 * of them: flags are replaced, not added to. */
static int adopt_verify_param(SSL *ssl, SSL_CTX *chosen) {
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    uint32_t inherit = X509_VERIFY_PARAM_get_inh_flags(param);
    int ok;
    X509_VERIFY_PARAM_set_inh_flags(param, X509_VP_FLAG_OVERWRITE | X509_VP_FLAG_RESET_FLAGS);
    ok = X509_VERIFY_PARAM_inherit(param, SSL_CTX_get0_param(chosen)) == 1;
    X509_VERIFY_PARAM_set_inh_flags(param, inherit);
    return ok;
}

/* Makes the SSL follow the chosen server context as if it had been created
 * from it. SSL_set_SSL_CTX switches the certificate, key, chain, trust
 * store, ALPN and callbacks, but an SSL keeps its own copy of everything
 * else it took from its first context: verify mode and parameters,
 * versions, cipher lists, groups, options (tickets) and ticket count. Each
 * is copied here, so a virtual host stricter than the default is never
 * reached under the default's policy. What stays with the first context
 * (OpenSSL keeps it in the session context): the session cache and the
 * ticket keys; sessions are bound to the chosen context anyway
 * (lunatls_bind_sessions). Returns 1, or 0 on failure. */
int lunatls_adopt_context(SSL *ssl, SSL_CTX *chosen) {
    const ContextData *d = lunatls_context_data(chosen);
    if (d == NULL || SSL_set_SSL_CTX(ssl, chosen) != chosen) return 0;
    SSL_clear_options(ssl, SSL_get_options(ssl));
    SSL_set_options(ssl, SSL_CTX_get_options(chosen));
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(chosen), NULL);
    return adopt_verify_param(ssl, chosen) &&
           SSL_set_min_proto_version(ssl, SSL_CTX_get_min_proto_version(chosen)) == 1 &&
           SSL_set_max_proto_version(ssl, SSL_CTX_get_max_proto_version(chosen)) == 1 &&
           SSL_set_cipher_list(ssl, d->ciphers) == 1 &&
           SSL_set_ciphersuites(ssl, d->ciphersuites) == 1 &&
           SSL_set1_groups_list(ssl, d->groups) == 1 &&
           SSL_set_num_tickets(ssl, SSL_CTX_get_num_tickets(chosen)) == 1;
}

/* Sets the SSL's session id context to a digest of its context's secret and
 * the server name the client asked for: OpenSSL resumes a session only
 * under the session id context it was made in, so a session never carries
 * a client to another context (another certificate, verify mode or policy)
 * nor to another host name, and no state is shared between processes.
 * Returns 1, or 0 on failure. */
int lunatls_bind_sessions(SSL *ssl, const char *server_name, size_t len) {
    const ContextData *d = lunatls_context_data(SSL_get_SSL_CTX(ssl));
    unsigned char input[SECRET_LEN + 1 + 255], digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (d == NULL || len > 255) return 0;
    memcpy(input, d->secret, SECRET_LEN);
    input[SECRET_LEN] = server_name != NULL; /* no SNI differs from every name */
    if (len > 0) memcpy(input + SECRET_LEN + 1, server_name, len);
    if (EVP_Digest(input, SECRET_LEN + 1 + len, digest, &digest_len, EVP_sha256(), NULL) != 1)
        return 0;
    return SSL_set_session_id_context(ssl, digest, digest_len < SSL_MAX_SID_CTX_LENGTH
                                                       ? digest_len : SSL_MAX_SID_CTX_LENGTH);
}

/* Whether handshakes of this server context pause once the ClientHello is
 * read (option client_hello), for conn:set_context. */
int lunatls_context_pauses(const SSL_CTX *ctx) {
    const ContextData *d = lunatls_context_data(ctx);
    return d != NULL && d->client_hello;
}

/* ---- the object ---- */

/* Frees our reference only: connections hold their own, and what their
 * callbacks read (ContextData) goes with the last of them. */
static int context_gc(lua_State *L) {
    lunatls_Context *c = (lunatls_Context *)luaL_checkudata(L, 1, LUNATLS_CONTEXT);
    SSL_CTX_free(c->ctx);
    c->ctx = NULL;
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
    if (!CRYPTO_THREAD_run_once(&data_index_once, new_data_index) || data_index < 0)
        luaL_error(L, "lunatls: cannot register with OpenSSL");
    lunatls_newclass(L, LUNATLS_CONTEXT, methods, metamethods);
    luaL_setfuncs(L, functions, 0);
}
