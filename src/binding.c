/* Channel bindings (conn:channel_binding): values that tie an
 * authentication made inside the connection (SCRAM, GSS-API, token
 * binding) to this TLS connection, so it cannot be relayed over another.
 *
 *   tls-exporter          RFC 9266: 32 bytes of the exporter, label
 *                         "EXPORTER-Channel-Binding", no context. TLS 1.2
 *                         only with the extended master secret.
 *   tls-server-end-point  RFC 5929: the digest of the server's certificate,
 *                         with the hash of its signature (SHA-256 for MD5
 *                         and SHA-1).
 *   tls-unique            RFC 5929: the first Finished message of the
 *                         handshake. TLS 1.2 only (RFC 8446 C.5). */
#include "lunatls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define EXPORTER_LABEL "EXPORTER-Channel-Binding"
#define EXPORTER_LENGTH 32

static int binding_failure(lua_State *L, const char *kind, const char *why) {
    lua_pushfstring(L, "channel_binding: %s: %s", kind, why);
    return lunatls_fail(L, lua_tostring(L, -1), "protocol");
}

static int tls_exporter(lua_State *L, SSL *ssl) {
    unsigned char out[EXPORTER_LENGTH];
    if (SSL_version(ssl) < TLS1_3_VERSION && !SSL_get_extms_support(ssl))
        return binding_failure(L, "tls-exporter",
                               "TLS 1.2 without the extended master secret (RFC 9266 4.2)");
    if (SSL_export_keying_material(ssl, out, sizeof out, EXPORTER_LABEL,
                                   sizeof EXPORTER_LABEL - 1, NULL, 0, 0) != 1)
        return binding_failure(L, "tls-exporter", "the exporter failed");
    lua_pushlstring(L, (const char *)out, sizeof out);
    return 1;
}

/* The hash RFC 5929 4.1 names for the certificate's signature. */
static const EVP_MD *end_point_digest(X509 *x) {
    int md = NID_undef;
    if (!X509_get_signature_info(x, &md, NULL, NULL, NULL)) return NULL;
    if (md == NID_md5 || md == NID_sha1) return EVP_sha256();
    return md == NID_undef ? NULL : EVP_get_digestbynid(md);
}

static int tls_server_end_point(lua_State *L, lunatls_Conn *c) {
    X509 *x = c->is_server ? SSL_get_certificate(c->ssl) : SSL_get0_peer_certificate(c->ssl);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    const EVP_MD *digest;
    if (x == NULL) return binding_failure(L, "tls-server-end-point", "no server certificate");
    digest = end_point_digest(x);
    ERR_clear_error();
    if (digest == NULL)
        return binding_failure(L, "tls-server-end-point",
                               "not defined for the certificate's signature algorithm");
    if (X509_digest(x, digest, md, &len) != 1)
        return binding_failure(L, "tls-server-end-point", "the digest failed");
    lua_pushlstring(L, (const char *)md, len);
    return 1;
}

/* The first Finished of the handshake: the client's in a full handshake,
 * the server's in a resumption. */
static int tls_unique(lua_State *L, lunatls_Conn *c) {
    unsigned char finished[EVP_MAX_MD_SIZE];
    size_t len;
    int ours_first = c->is_server == SSL_session_reused(c->ssl);
    if (SSL_version(c->ssl) >= TLS1_3_VERSION)
        return binding_failure(L, "tls-unique", "not defined for TLS 1.3 (use tls-exporter)");
    len = ours_first ? SSL_get_finished(c->ssl, finished, sizeof finished)
                     : SSL_get_peer_finished(c->ssl, finished, sizeof finished);
    lua_pushlstring(L, (const char *)finished, len);
    return 1;
}

/* conn:channel_binding(kind) -> bytes, or nil, message, "protocol" */
int lunatls_conn_channel_binding(lua_State *L) {
    static const char *const kinds[] = {"tls-exporter", "tls-server-end-point", "tls-unique", NULL};
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    int kind = luaL_checkoption(L, 2, NULL, kinds);
    if (!SSL_is_init_finished(c->ssl)) return binding_failure(L, kinds[kind], "the handshake is not done");
    switch (kind) {
    case 0: return tls_exporter(L, c->ssl);
    case 1: return tls_server_end_point(L, c);
    default: return tls_unique(L, c);
    }
}
