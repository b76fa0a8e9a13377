/* lunatls.Certificate: a peer certificate (X509), read-only. */
#define _POSIX_C_SOURCE 200809L /* inet_ntop */
#include "lunatls.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <ctype.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

static X509 *checkcert(lua_State *L) {
    return ((lunatls_Certificate *)lunatls_checkopen(L, 1, LUNATLS_CERTIFICATE))->x509;
}

/* Pushes a closed Certificate: the caller fetches its X509 only after this
 * allocation (which may raise, or run a finalizer that closes the Conn the
 * X509 comes from) and stores a reference of its own in ->x509. */
lunatls_Certificate *lunatls_newcertificate(lua_State *L) {
    lunatls_Certificate *c = (lunatls_Certificate *)lua_newuserdatauv(L, sizeof *c, 0);
    c->x509 = NULL;
    luaL_setmetatable(L, LUNATLS_CERTIFICATE);
    return c;
}

/* Pushes what was written to a memory BIO (ok), or raises; frees the BIO
 * either way (lunatls_push_copy cannot raise before it is freed). */
static int push_membio(lua_State *L, BIO *bio, int ok) {
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    int copied = ok && len >= 0 && lunatls_push_copy(L, data, (size_t)len);
    BIO_free(bio);
    ERR_clear_error();
    if (!ok || len < 0) return luaL_error(L, "lunatls.Certificate: out of memory");
    return copied ? 1 : lua_error(L);
}

/* A distinguished name in RFC 2253 form: "CN=localhost,O=Example". */
static int push_name(lua_State *L, const X509_NAME *name) {
    BIO *bio = BIO_new(BIO_s_mem());
    int ok = bio != NULL && X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0;
    if (bio == NULL) return luaL_error(L, "lunatls.Certificate: out of memory");
    return push_membio(L, bio, ok);
}

static int cert_subject(lua_State *L) {
    return push_name(L, X509_get_subject_name(checkcert(L)));
}

static int cert_issuer(lua_State *L) {
    return push_name(L, X509_get_issuer_name(checkcert(L)));
}

/* An IP address SAN as text: "127.0.0.1", "::1". */
static void push_ip(lua_State *L, const ASN1_OCTET_STRING *ip) {
    char text[INET6_ADDRSTRLEN];
    int len = ASN1_STRING_length(ip);
    int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
    if (family == 0 || inet_ntop(family, ASN1_STRING_get0_data(ip), text, sizeof text) == NULL)
        lua_pushliteral(L, "<invalid IP address>");
    else
        lua_pushstring(L, text);
}

/* Pushes one SAN entry's value; returns its kind ("dns", "ip", "email",
 * "uri"), or NULL for kinds we do not show (nothing pushed). */
static const char *push_general_name(lua_State *L, const GENERAL_NAME *gn) {
    const ASN1_STRING *s;
    const char *kind;
    switch (gn->type) {
    case GEN_DNS: s = gn->d.dNSName; kind = "dns"; break;
    case GEN_EMAIL: s = gn->d.rfc822Name; kind = "email"; break;
    case GEN_URI: s = gn->d.uniformResourceIdentifier; kind = "uri"; break;
    case GEN_IPADD: push_ip(L, gn->d.iPAddress); return "ip";
    default: return NULL;
    }
    lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
    return kind;
}

/* The list of names at light userdata 1 (GENERAL_NAMES, may be NULL): plain
 * values, or {type =, value =} when argument 2 is true. */
static int push_names_protected(lua_State *L) {
    GENERAL_NAMES *names = (GENERAL_NAMES *)lua_touserdata(L, 1);
    int typed = lua_toboolean(L, 2);
    int i, n = 0;
    lua_newtable(L);
    for (i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const char *kind = push_general_name(L, sk_GENERAL_NAME_value(names, i));
        if (kind == NULL) continue;
        if (typed) {
            lua_createtable(L, 0, 2);
            lua_insert(L, -2);
            lua_setfield(L, -2, "value");
            lua_pushstring(L, kind);
            lua_setfield(L, -2, "type");
        }
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

/* Pushes the certificate's subject alternative names (see
 * push_names_protected), decoded under lua_pcall so that they are freed
 * even when Lua runs out of memory. */
static void push_names(lua_State *L, X509 *x, int typed) {
    GENERAL_NAMES *names = (GENERAL_NAMES *)X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int ok;
    lua_pushcfunction(L, push_names_protected);
    lua_pushlightuserdata(L, names);
    lua_pushboolean(L, typed);
    ok = lua_pcall(L, 2, 1, 0) == LUA_OK;
    GENERAL_NAMES_free(names);
    ERR_clear_error();
    if (!ok) lua_error(L);
}

/* Replaces the list on the stack top by its entries joined with ", ". */
static void join_list(lua_State *L) {
    luaL_Buffer b;
    int list = lua_gettop(L);
    lua_Integer i, n = (lua_Integer)lua_rawlen(L, list);
    luaL_buffinit(L, &b);
    for (i = 1; i <= n; i++) {
        if (i > 1) luaL_addstring(&b, ", ");
        lua_rawgeti(L, list, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_remove(L, list);
}

/* Pushes the certificate's subject alternative names as one line of text
 * ("localhost, 127.0.0.1"), for error messages, and returns how many there
 * are. */
int lunatls_push_names_text(lua_State *L, X509 *x) {
    int n;
    push_names(L, x, 0);
    n = (int)lua_rawlen(L, -1);
    join_list(L);
    return n;
}

/* cert:subject_alt_names([typed]) -> {"localhost", "127.0.0.1", ...}, or
 * with typed {{type = "dns", value = "localhost"}, {type = "ip", ...}} */
static int cert_subject_alt_names(lua_State *L) {
    push_names(L, checkcert(L), lua_toboolean(L, 2));
    return 1;
}

/* cert:public_key() -> its type ("ec", "rsa", "ed25519", ...) and size in bits */
static int cert_public_key(lua_State *L) {
    EVP_PKEY *key = X509_get0_pubkey(checkcert(L));
    const char *type = key != NULL ? EVP_PKEY_get0_type_name(key) : NULL;
    luaL_Buffer b;
    size_t i;
    ERR_clear_error();
    if (type == NULL) {
        lua_pushnil(L);
        return 1;
    }
    luaL_buffinit(L, &b);
    for (i = 0; type[i] != '\0'; i++) luaL_addchar(&b, (char)tolower((unsigned char)type[i]));
    luaL_pushresult(&b);
    lua_pushinteger(L, EVP_PKEY_get_bits(key));
    return 2;
}

/* cert:signature_algorithm() -> "ecdsa-with-SHA256", "sha256WithRSAEncryption", ... */
static int cert_signature_algorithm(lua_State *L) {
    int nid = X509_get_signature_nid(checkcert(L));
    const char *name = nid != NID_undef ? OBJ_nid2ln(nid) : NULL;
    lua_pushstring(L, name != NULL ? name : "unknown");
    return 1;
}

/* Seconds since the epoch of a UTC calendar date (days_from_civil). */
static lua_Integer epoch_seconds(const struct tm *tm) {
    long long y = tm->tm_year + 1900, m = tm->tm_mon + 1, era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + tm->tm_mday - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (lua_Integer)((era * 146097 + doe - 719468) * 86400 + tm->tm_hour * 3600 +
                         tm->tm_min * 60 + tm->tm_sec);
}

static int push_time(lua_State *L, const ASN1_TIME *t) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        ERR_clear_error();
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, epoch_seconds(&tm));
    return 1;
}

static int cert_not_before(lua_State *L) {
    return push_time(L, X509_get0_notBefore(checkcert(L)));
}

static int cert_not_after(lua_State *L) {
    return push_time(L, X509_get0_notAfter(checkcert(L)));
}

static int cert_serial(lua_State *L) {
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(checkcert(L)), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    int copied;
    BN_free(bn);
    if (hex == NULL) return luaL_error(L, "lunatls.Certificate: out of memory");
    copied = lunatls_push_copy(L, hex, strlen(hex));
    OPENSSL_free(hex);
    return copied ? 1 : lua_error(L);
}

/* cert:fingerprint([digest]) -> lowercase hex of the DER's digest (sha256) */
static int cert_fingerprint(lua_State *L) {
    X509 *x = checkcert(L);
    const char *name = lunatls_opttext(L, 2, "sha256");
    unsigned char md[EVP_MAX_MD_SIZE];
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    unsigned int i, len = 0;
    EVP_MD *digest = EVP_MD_fetch(NULL, name, NULL);
    int ok = digest != NULL && X509_digest(x, digest, md, &len) == 1;
    EVP_MD_free(digest);
    ERR_clear_error();
    if (!ok)
        return luaL_argerror(L, 2, lua_pushfstring(L, "unknown digest %s",
                                                   lunatls_push_quoted(L, name, strlen(name))));
    for (i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    lua_pushlstring(L, hex, 2 * (size_t)len);
    return 1;
}

static int cert_pem(lua_State *L) {
    X509 *x = checkcert(L);
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return luaL_error(L, "lunatls.Certificate: out of memory");
    return push_membio(L, bio, PEM_write_bio_X509(bio, x) == 1);
}

static int cert_gc(lua_State *L) {
    lunatls_Certificate *c = (lunatls_Certificate *)luaL_checkudata(L, 1, LUNATLS_CERTIFICATE);
    X509_free(c->x509);
    c->x509 = NULL;
    return 0;
}

static int cert_tostring(lua_State *L) {
    lunatls_Certificate *c = (lunatls_Certificate *)luaL_checkudata(L, 1, LUNATLS_CERTIFICATE);
    X509 *x = c->x509;
    char *subject;
    int copied;
    /* closed: a finalizer may resurrect a collected Certificate */
    if (x == NULL) return lunatls_tostring_closed(L, LUNATLS_CERTIFICATE);
    subject = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);
    copied = subject != NULL && lunatls_push_copy(L, subject, strlen(subject));
    OPENSSL_free(subject);
    if (subject != NULL && !copied) return lua_error(L);
    if (subject == NULL) lua_pushliteral(L, "?");
    lua_pushfstring(L, "%s: %s", LUNATLS_CERTIFICATE, lua_tostring(L, -1));
    return 1;
}

static int cert_eq(lua_State *L) {
    lunatls_Certificate *a = (lunatls_Certificate *)luaL_checkudata(L, 1, LUNATLS_CERTIFICATE);
    lunatls_Certificate *b = (lunatls_Certificate *)luaL_checkudata(L, 2, LUNATLS_CERTIFICATE);
    lua_pushboolean(L, a->x509 != NULL && b->x509 != NULL && X509_cmp(a->x509, b->x509) == 0);
    return 1;
}

/* Protected: the list of the certificates at light userdata 1 (each gets a
 * reference of its own). */
static int push_list_protected(lua_State *L) {
    STACK_OF(X509) *certs = (STACK_OF(X509) *)lua_touserdata(L, 1);
    int i;
    lua_createtable(L, sk_X509_num(certs), 0);
    for (i = 0; i < sk_X509_num(certs); i++) {
        lunatls_Certificate *cert = lunatls_newcertificate(L);
        cert->x509 = sk_X509_value(certs, i);
        X509_up_ref(cert->x509);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* load_certificates(source) -> {Certificate, ...}, or nil, message,
 * "config": every certificate of PEM text, DER bytes or a file of either. */
static int certificates_load(lua_State *L) {
    size_t len;
    const char *s = lunatls_check_source(L, 1, &len);
    STACK_OF(X509) *certs;
    int failed, ok;
    if ((certs = lunatls_load_certificates(L, "load_certificates", s, len, 1, &failed)) == NULL)
        return failed;
    lua_pushcfunction(L, push_list_protected);
    lua_pushlightuserdata(L, certs);
    ok = lua_pcall(L, 1, 1, 0) == LUA_OK;
    sk_X509_pop_free(certs, X509_free);
    return ok ? 1 : lua_error(L);
}

void lunatls_open_certificate(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"subject", cert_subject},
        {"issuer", cert_issuer},
        {"subject_alt_names", cert_subject_alt_names},
        {"not_before", cert_not_before},
        {"not_after", cert_not_after},
        {"serial", cert_serial},
        {"fingerprint", cert_fingerprint},
        {"pem", cert_pem},
        {"public_key", cert_public_key},
        {"signature_algorithm", cert_signature_algorithm},
        {NULL, NULL},
    };
    static const luaL_Reg metamethods[] = {
        {"__gc", cert_gc},
        {"__tostring", cert_tostring},
        {"__eq", cert_eq},
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"load_certificates", certificates_load},
        {NULL, NULL},
    };
    lunatls_newclass(L, LUNATLS_CERTIFICATE, methods, metamethods);
    luaL_setfuncs(L, functions, 0);
}
