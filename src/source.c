/* Where certificates and keys come from: PEM text, DER bytes, or a file of
 * either. The one place that reads them, for contexts (context.c) and for
 * tls.load_certificates (x509.c).
 *
 * A source given as a string is DER when it is exactly one DER SEQUENCE
 * (its length field says so), PEM text when it holds "-----BEGIN ", and
 * otherwise a path; a file is read as PEM, and as DER when it holds no PEM
 * block. Every PEM block must load: a damaged one fails the whole source,
 * named by its place, never cut short in silence. */
#define _POSIX_C_SOURCE 200809L /* stat */
#include "lunatls.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>

/* Whether s is one whole DER SEQUENCE (a certificate, a key). */
static int is_der(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i, body = 0, header;
    if (len < 2 || p[0] != 0x30) return 0;
    if (p[1] < 0x80) return (size_t)p[1] + 2 == len;
    header = 2 + (p[1] & 0x7f);
    if ((p[1] & 0x7f) == 0 || (p[1] & 0x7f) > 4 || len < header) return 0;
    for (i = 2; i < header; i++) body = body << 8 | p[i];
    return header + body == len;
}

/* Argument arg as a source (see lunatls_opt_source). */
const char *lunatls_check_source(lua_State *L, int arg, size_t *len) {
    const char *s;
    luaL_checktype(L, arg, LUA_TSTRING); /* a number is no certificate */
    s = lua_tolstring(L, arg, len);
    if (!is_der(s, *len) && strlen(s) != *len) luaL_argerror(L, arg, "contains a NUL byte");
    return s;
}

/* Option `name` as a source: DER bytes as they are; text (PEM or a path)
 * refusing a NUL byte, which would cut it short. NULL when absent. */
const char *lunatls_opt_source(lua_State *L, int opts, const char *name, size_t *len) {
    size_t n;
    const char *s = lunatls_opt_bytes(L, opts, name, &n);
    if (s != NULL && !is_der(s, n)) lunatls_opt_string(L, opts, name, NULL);
    if (len != NULL) *len = n;
    return s;
}

static int is_pem_text(const char *s, size_t len) {
    return !is_der(s, len) && strstr(s, "-----BEGIN ") != NULL;
}

/* A string the caller gave as the data itself (not a path). */
static int is_data(const char *s, size_t len, int may_be_path) {
    return !may_be_path || is_der(s, len) || is_pem_text(s, len);
}

/* What a failure message names: the path, "DER bytes" or "PEM text". */
const char *lunatls_source_name(const char *s, size_t len, int may_be_path) {
    if (is_der(s, len)) return "DER bytes";
    return is_data(s, len, may_be_path) ? "PEM text" : s;
}

/* nil, "<what>: <path>: <problem>", "config" when path is not a readable
 * file (or, want_dir, a directory); 0 when it looks right. OpenSSL would
 * say "no start line" for a directory and nothing at all for a capath. */
int lunatls_path_problem(lua_State *L, const char *what, const char *path, int want_dir) {
    struct stat st;
    const char *problem = NULL;
    if (stat(path, &st) != 0) problem = strerror(errno);
    else if (want_dir && !S_ISDIR(st.st_mode)) problem = "not a directory";
    else if (!want_dir && S_ISDIR(st.st_mode)) problem = "is a directory, not a file";
    if (problem == NULL) return 0;
    lua_pushfstring(L, "%s: %s: %s", what, lunatls_push_bounded(L, path), problem);
    return lunatls_fail(L, lua_tostring(L, -1), "config");
}

/* Opens option `what` (PEM text, or a path when may_be_path) as *bio; 0,
 * or the failure's results. */
static int open_source(lua_State *L, const char *what, const char *s, size_t len,
                       int may_be_path, BIO **bio) {
    int n;
    if (is_data(s, len, may_be_path)) {
        *bio = BIO_new_mem_buf(s, (int)len);
    } else {
        if ((n = lunatls_path_problem(L, what, s, 0)) != 0) return n;
        *bio = BIO_new_file(s, "r");
    }
    return *bio != NULL ? 0 : lunatls_config_error(L, what, lunatls_source_name(s, len, may_be_path));
}

/* nil, "<what>: <source>: entry <i>: <reason>", "config" */
static int entry_error(lua_State *L, const char *what, const char *source, int entry) {
    return lunatls_config_error(L, what, lua_pushfstring(L, "%s: entry %d", source, entry));
}

/* What a source holds: which PEM blocks are ours, and how one decodes and
 * is added to the output (0: damaged). A block name of NULL means DER. */
typedef struct {
    int (*wants)(const char *pem_name);
    int (*add)(void *out, const char *pem_name, const unsigned char *der, long len);
} ObjectKind;

static int is_certificate_block(const char *name) {
    return strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0 ||
           strcmp(name, PEM_STRING_X509_TRUSTED) == 0;
}

/* Decodes one certificate (trailing bytes mean it is not what was meant). */
static int add_certificate(void *out, const char *name, const unsigned char *der, long len) {
    const unsigned char *p = der;
    X509 *x = name != NULL && strcmp(name, PEM_STRING_X509_TRUSTED) == 0
                  ? d2i_X509_AUX(NULL, &p, len) : d2i_X509(NULL, &p, len);
    if (x != NULL && p == der + len && sk_X509_push((STACK_OF(X509) *)out, x) > 0) return 1;
    X509_free(x);
    return 0;
}

static int is_crl_block(const char *name) {
    return strcmp(name, PEM_STRING_X509_CRL) == 0;
}

static int add_crl(void *out, const char *name, const unsigned char *der, long len) {
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, len);
    (void)name;
    if (crl != NULL && p == der + len && sk_X509_CRL_push((STACK_OF(X509_CRL) *)out, crl) > 0)
        return 1;
    X509_CRL_free(crl);
    return 0;
}

static const ObjectKind certificates = {is_certificate_block, add_certificate};
static const ObjectKind crls = {is_crl_block, add_crl};

/* All the bytes left in bio, in *data (OPENSSL_free it); 0 when too long. */
static int read_all(BIO *bio, unsigned char **data, long *len) {
    unsigned char buf[4096];
    int n;
    *data = NULL;
    *len = 0;
    while ((n = BIO_read(bio, buf, sizeof buf)) > 0) {
        unsigned char *grown;
        if (*len > (1L << 26) - n || (grown = OPENSSL_realloc(*data, (size_t)(*len + n))) == NULL) {
            OPENSSL_free(*data);
            *data = NULL;
            return 0;
        }
        memcpy(grown + *len, buf, (size_t)n);
        *data = grown;
        *len += n;
    }
    return 1;
}

/* A source without PEM blocks: one DER object (frees bio). An empty or
 * textual source adds nothing: "no certificate found" follows. */
static int read_der(lua_State *L, const char *what, const char *s, size_t len, int may_be_path,
                    BIO *bio, const ObjectKind *kind, void *out) {
    unsigned char *der = NULL;
    long der_len = 0;
    int is_file = !is_data(s, len, may_be_path), ok;
    if (!is_file && !is_der(s, len)) {
        BIO_free(bio);
        return 0;
    }
    ok = BIO_reset(bio) >= 0 && read_all(bio, &der, &der_len) && der_len > 0 &&
         kind->add(out, NULL, der, der_len);
    OPENSSL_free(der);
    BIO_free(bio);
    if (ok) return 0;
    if (!is_file) return lunatls_config_error(L, what, "DER bytes");
    ERR_clear_error(); /* a file that is neither PEM nor DER */
    return 0;
}

/* Reads every object of the source into out, in order. PEM blocks of
 * other types (a key beside its certificate) are skipped, as OpenSSL does;
 * a damaged block, or one named like ours that does not decode, fails the
 * whole load and is named by its place: a bundle is never cut short in
 * silence. Returns 0, or the failure's results. */
static int read_objects(lua_State *L, const char *what, const char *s, size_t len,
                        int may_be_path, const ObjectKind *kind, void *out) {
    const char *source = lunatls_source_name(s, len, may_be_path);
    BIO *bio;
    int entry = 0, n;
    if ((n = open_source(L, what, s, len, may_be_path, &bio)) != 0) return n;
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long der_len = 0;
        int ok;
        ERR_set_mark();
        if (PEM_read_bio(bio, &name, &header, &der, &der_len) != 1) {
            unsigned long e = ERR_peek_last_error();
            int at_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
            if (at_end) ERR_pop_to_mark();
            else ERR_clear_last_mark();
            if (at_end && entry == 0) return read_der(L, what, s, len, may_be_path, bio, kind, out);
            BIO_free(bio);
            return at_end ? 0 : entry_error(L, what, source, entry + 1);
        }
        ERR_clear_last_mark();
        entry++;
        ok = !kind->wants(name) || kind->add(out, name, der, der_len);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        if (!ok) {
            BIO_free(bio);
            return entry_error(L, what, source, entry);
        }
    }
}

/* Loads the CRLs of a source (PEM text, DER bytes or a file of either)
 * into *out; 0, or the failure's results (also for a source with none). */
int lunatls_load_crls(lua_State *L, const char *s, size_t len, STACK_OF(X509_CRL) *out) {
    int before = sk_X509_CRL_num(out);
    int failed = read_objects(L, "crl", s, len, 1, &crls, out);
    if (failed == 0 && sk_X509_CRL_num(out) == before) {
        lua_pushfstring(L, "crl: %s: no CRL found", lunatls_push_bounded(L, lunatls_source_name(s, len, 1)));
        failed = lunatls_fail(L, lua_tostring(L, -1), "config");
    }
    return failed;
}

/* Loads a certificate source that must hold at least one certificate. */
STACK_OF(X509) *lunatls_load_certificates(lua_State *L, const char *what, const char *s,
                                         size_t len, int may_be_path, int *failed) {
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (certs == NULL) luaL_error(L, "new_context: out of memory");
    *failed = read_objects(L, what, s, len, may_be_path, &certificates, certs);
    if (*failed == 0 && sk_X509_num(certs) == 0) {
        lua_pushfstring(L, "%s: %s: no certificate found", what,
                        lunatls_push_bounded(L, lunatls_source_name(s, len, may_be_path)));
        *failed = lunatls_fail(L, lua_tostring(L, -1), "config");
    }
    if (*failed != 0) {
        sk_X509_pop_free(certs, X509_free);
        return NULL;
    }
    return certs;
}

/* What the password callback needs during new_context. */
typedef struct {
    lua_State *L;
    int failed;           /* the password function raised: its error is on the stack top */
    int too_long;         /* the password does not fit OpenSSL's buffer of this size */
    const char *returned; /* the type the password function returned, when not a string */
    int nul;              /* the password function returned a string with a NUL byte */
} PasswordSource;

/* OpenSSL's buffer for the password, and how much of it we filled. */
typedef struct {
    char *buf;
    int size;
    int len;
    int too_long;
    const char *returned; /* what the function returned, when not a password */
    int nul;              /* ... a string with a NUL byte */
} PasswordRequest;

/* password_protected(opts, request): copies the password option, or what
 * the password function returns, into the request's buffer. */
static int password_protected(lua_State *L) {
    PasswordRequest *request = (PasswordRequest *)lua_touserdata(L, 2);
    size_t len;
    const char *pw;
    if (lua_getfield(L, 1, "password") == LUA_TFUNCTION) {
        lua_call(L, 0, 1);
        if (lua_type(L, -1) != LUA_TSTRING) { /* a number is not a password either */
            request->returned = luaL_typename(L, -1); /* a static string */
            return 0;
        }
    }
    pw = lua_tolstring(L, -1, &len);
    if (pw == NULL) return 0; /* no password given: an empty one, and the key fails to open */
    if (strlen(pw) != len) { /* OpenSSL would cut the password short there */
        request->returned = "a string with a NUL byte";
        request->nul = 1;
        return 0;
    }
    if (len > (size_t)request->size) {
        request->too_long = 1;
        return 0;
    }
    memcpy(request->buf, pw, len);
    request->len = (int)len;
    return 0;
}

/* Runs inside PEM_read_bio_PrivateKey, where nothing may raise (not even
 * out of memory while converting the password to a string): everything
 * that touches Lua runs under lua_pcall, in password_protected. */
static int password_callback(char *buf, int size, int rwflag, void *userdata) {
    PasswordSource *src = (PasswordSource *)userdata;
    lua_State *L = src->L;
    PasswordRequest request = {buf, size, 0, 0, NULL, 0};
    (void)rwflag;
    if (src->failed || !lua_checkstack(L, 3)) return 0;
    lua_pushcfunction(L, password_protected);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, &request);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        src->failed = 1;
        return 0;
    }
    if (request.too_long) src->too_long = size;
    if (request.returned != NULL) src->returned = request.returned;
    if (request.nul) src->nul = 1;
    return request.len;
}

void lunatls_check_password(lua_State *L) {
    int t = lua_getfield(L, 1, "password");
    if (t != LUA_TNIL && t != LUA_TSTRING && t != LUA_TFUNCTION)
        lunatls_opt_type_error(L, 1, "password", "string or function");
    lua_pop(L, 1);
    if (t == LUA_TSTRING) lunatls_opt_string(L, 1, "password", NULL); /* refuses a NUL */
}

/* The private key of source s, or NULL with the failure's results in
 * *failed. The password comes from option `password` of the options
 * snapshot at stack index 1 (new_context's). */
EVP_PKEY *lunatls_load_key(lua_State *L, const char *s, size_t len, int *failed) {
    PasswordSource src = {L, 0, 0, NULL, 0};
    EVP_PKEY *pkey = NULL;
    BIO *bio;
    if ((*failed = open_source(L, "key", s, len, 1, &bio)) != 0) return NULL;
    /* Always pass a callback: without one OpenSSL prompts on the terminal. */
    pkey = PEM_read_bio_PrivateKey(bio, NULL, password_callback, &src);
    if (pkey == NULL && !src.failed && BIO_reset(bio) >= 0) /* DER: PKCS#8, maybe encrypted */
        pkey = d2i_PKCS8PrivateKey_bio(bio, NULL, password_callback, &src);
    if (pkey == NULL && !src.failed && BIO_reset(bio) >= 0) /* DER: any other form */
        pkey = d2i_PrivateKey_bio(bio, NULL);
    BIO_free(bio);
    if (src.failed) {
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        lua_error(L); /* the password function's own error */
    }
    if (src.returned != NULL) {
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        luaL_argerror(L, 1, lua_pushfstring(L, "option 'password': the function returned %s%s",
                                               src.returned, src.nul ? "" : ", not a string"));
    }
    if (src.too_long) {
        EVP_PKEY_free(pkey);
        lua_pushfstring(L, "key: %s: the password is longer than %d bytes", lunatls_source_name(s, len, 1),
                        src.too_long);
        *failed = lunatls_fail(L, lua_tostring(L, -1), "config");
        return NULL;
    }
    if (pkey == NULL) *failed = lunatls_config_error(L, "key", lunatls_source_name(s, len, 1));
    return pkey;
}


/* ---- PKCS#12 ---- */

/* Pushes the password option's value (calling the function it may be), or
 * nil; raises for anything but a string without NUL bytes. */
static const char *push_password(lua_State *L) {
    size_t len;
    const char *pw;
    if (lua_getfield(L, 1, "password") == LUA_TFUNCTION) lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, 1, lua_pushfstring(L, "option 'password': the function returned %s, "
                                               "not a string", luaL_typename(L, -1)));
    pw = lua_tolstring(L, -1, &len);
    if (strlen(pw) != len) luaL_argerror(L, 1, "option 'password' contains a NUL byte");
    return pw;
}

/* Reads a PKCS#12 bundle (a path, or its DER bytes) with the password
 * option: its key, and its certificates with ours first. Returns 0, or the
 * failure's results. */
int lunatls_load_pkcs12(lua_State *L, const char *s, size_t len, EVP_PKEY **pkey,
                        STACK_OF(X509) **certs) {
    const char *password = push_password(L);
    X509 *leaf = NULL;
    PKCS12 *p12 = NULL;
    BIO *bio;
    int n, ok;
    *pkey = NULL;
    *certs = NULL;
    if ((n = open_source(L, "pkcs12", s, len, 1, &bio)) != 0) return n;
    p12 = d2i_PKCS12_bio(bio, NULL);
    BIO_free(bio);
    ok = p12 != NULL && PKCS12_parse(p12, password, pkey, &leaf, certs) == 1 && leaf != NULL &&
         *pkey != NULL;
    PKCS12_free(p12);
    lua_pop(L, 1); /* the password */
    if (ok && *certs == NULL) ok = (*certs = sk_X509_new_null()) != NULL;
    if (ok) ok = sk_X509_insert(*certs, leaf, 0) > 0;
    if (!ok) {
        X509_free(leaf);
        EVP_PKEY_free(*pkey);
        sk_X509_pop_free(*certs, X509_free);
        *pkey = NULL;
        *certs = NULL;
        return lunatls_config_error(L, "pkcs12", lunatls_source_name(s, len, 1));
    }
    return 0;
}
