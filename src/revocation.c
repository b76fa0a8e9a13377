/* Revocation: CRLs (option crl) and OCSP stapling (server option
 * ocsp_staple, client option ocsp, conn:ocsp_status()).
 *
 * A client asks for a staple with ocsp = "request" (or "require"); the
 * server's staple is checked as browsers do: the response must be
 * successful, signed by the certificate's issuer (or a responder it
 * delegated to) and current, and speak of the server's own certificate.
 * "require" fails the handshake, code "verify", unless that gives "good". */
#include "lunatls.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>

#define OCSP_LEEWAY 300 /* seconds of clock skew allowed on thisUpdate/nextUpdate */

/* ---- CRLs ---- */

/* Option crl: a source or a list of them, added to the trust store; with
 * it the leaf's revocation is checked unless verify_flags says more
 * (crl_check_all). Returns 0, or the failure's results. */
int lunatls_set_crls(lua_State *L, SSL_CTX *ctx, int opts) {
    STACK_OF(X509_CRL) *list;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    lua_Integer i, n;
    int failed = 0, k, ok = 1;
    if ((n = lunatls_opt_strings(L, opts, "crl")) < 0) return 0;
    if ((list = sk_X509_CRL_new_null()) == NULL) return luaL_error(L, "new_context: out of memory");
    for (i = 1; i <= n && failed == 0; i++) {
        size_t len;
        const char *s;
        lua_rawgeti(L, -1, i);
        s = lua_tolstring(L, -1, &len);
        failed = lunatls_load_crls(L, s, len, list);
        if (failed == 0) lua_pop(L, 1);
    }
    for (k = 0; failed == 0 && ok && k < sk_X509_CRL_num(list); k++)
        ok = X509_STORE_add_crl(store, sk_X509_CRL_value(list, k)) == 1;
    sk_X509_CRL_pop_free(list, X509_CRL_free);
    if (failed != 0) return failed;
    if (!ok) return lunatls_config_error(L, "crl", "the trust store refused it");
    lua_pop(L, 1);
    if (!(X509_VERIFY_PARAM_get_flags(SSL_CTX_get0_param(ctx)) & X509_V_FLAG_CRL_CHECK_ALL))
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_CRL_CHECK);
    return 0;
}

/* ---- the server's staple ---- */

/* Hands a copy of the DER response to OpenSSL (which frees it). */
static int staple(SSL *ssl, const char *der, size_t len) {
    unsigned char *copy = OPENSSL_memdup(der, len);
    if (copy == NULL || SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

typedef struct {
    SSL *ssl;
    int result; /* SSL_TLSEXT_ERR_* */
} StapleChoice;

/* ocsp_staple(), protected: 1 the Conn, 2 the StapleChoice. The option is
 * the response, or a function returning it (or nil: no staple). */
static int staple_protected(lua_State *L) {
    StapleChoice *choice = (StapleChoice *)lua_touserdata(L, 2);
    size_t len;
    const char *der;
    lunatls_push_callback(L, "ocsp_staple");
    if (lua_isfunction(L, -1)) lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) return 0;
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "ocsp_staple function must return a DER OCSP response or nil, not %s",
                          luaL_typename(L, -1));
    der = lua_tolstring(L, -1, &len);
    choice->result = len > 0 ? staple(choice->ssl, der, len) : SSL_TLSEXT_ERR_NOACK;
    return 0;
}

/* OpenSSL's status callback: the server side (the client asked). */
static int server_status_callback(SSL *ssl, void *arg) {
    lunatls_Conn *c = lunatls_callback_conn(ssl);
    StapleChoice choice = {ssl, SSL_TLSEXT_ERR_NOACK};
    (void)arg;
    if (c == NULL || !lunatls_call_protected(c, staple_protected, &choice))
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return choice.result;
}

/* ---- the client's check ---- */

static const char *const status_words[] = {
    [OCSP_NONE] = "none", [OCSP_GOOD] = "good", [OCSP_REVOKED] = "revoked",
    [OCSP_UNKNOWN] = "unknown", [OCSP_INVALID] = "invalid",
};

/* Records the verdict; returns the status, so that a judge can end with it. */
static int judge(lunatls_Conn *c, int status, const char *message) {
    c->ocsp_status = status;
    c->ocsp_message = message;
    return status;
}

/* Judges the basic response bs for the verified chain. */
static int judge_basic(lunatls_Conn *c, OCSP_BASICRESP *bs, STACK_OF(X509) *chain) {
    X509_STORE *store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(c->ssl));
    OCSP_CERTID *id;
    ASN1_GENERALIZEDTIME *this_update, *next_update;
    int status, reason;
    if (OCSP_basic_verify(bs, chain, store, 0) <= 0)
        return judge(c, OCSP_INVALID, "the response is not signed by the certificate's issuer");
    id = OCSP_cert_to_id(NULL, sk_X509_value(chain, 0), sk_X509_value(chain, 1));
    if (id == NULL || !OCSP_resp_find_status(bs, id, &status, &reason, NULL, &this_update,
                                             &next_update)) {
        OCSP_CERTID_free(id);
        return judge(c, OCSP_INVALID, "the response is not about the server's certificate");
    }
    OCSP_CERTID_free(id);
    if (!OCSP_check_validity(this_update, next_update, OCSP_LEEWAY, -1))
        return judge(c, OCSP_INVALID, "the response is out of date");
    if (status == V_OCSP_CERTSTATUS_GOOD) return judge(c, OCSP_GOOD, "the certificate is good");
    if (status == V_OCSP_CERTSTATUS_REVOKED) return judge(c, OCSP_REVOKED, "the certificate is revoked");
    return judge(c, OCSP_UNKNOWN, "the responder does not know the certificate");
}

/* Judges the staple the server sent (if any) into c->ocsp_status. */
static int judge_staple(lunatls_Conn *c) {
    const unsigned char *der = NULL, *p;
    long len = SSL_get_tlsext_status_ocsp_resp(c->ssl, &der);
    STACK_OF(X509) *chain = SSL_get0_verified_chain(c->ssl);
    OCSP_RESPONSE *resp;
    OCSP_BASICRESP *bs;
    if (der == NULL || len <= 0) return judge(c, OCSP_NONE, "the server stapled no OCSP response");
    p = der;
    resp = d2i_OCSP_RESPONSE(NULL, &p, len);
    if (resp == NULL || OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        OCSP_RESPONSE_free(resp);
        return judge(c, OCSP_INVALID, "the response is not a successful OCSP response");
    }
    bs = OCSP_response_get1_basic(resp);
    OCSP_RESPONSE_free(resp);
    if (bs == NULL || chain == NULL || sk_X509_num(chain) < 2)
        judge(c, OCSP_INVALID, "no verified chain to check the response against");
    else
        judge_basic(c, bs, chain);
    OCSP_BASICRESP_free(bs);
    return c->ocsp_status;
}

/* OpenSSL's status callback: the client side, once the server's
 * certificate is verified. 0 fails the handshake (ocsp = "require"). */
static int client_status_callback(SSL *ssl, void *arg) {
    lunatls_Conn *c = (lunatls_Conn *)SSL_get_app_data(ssl);
    (void)arg;
    if (c == NULL) return 0;
    judge_staple(c);
    ERR_clear_error();
    return !lunatls_context_data(SSL_get_SSL_CTX(ssl))->ocsp_required || c->ocsp_status == OCSP_GOOD;
}

/* Options ocsp (client: "request" or "require") and ocsp_staple (server: a
 * DER response, or a function returning one per handshake). */
void lunatls_set_ocsp(lua_State *L, lunatls_Context *c, int opts) {
    static const char *const modes[] = {"request", "require", NULL};
    int t;
    lua_pushliteral(L, "ocsp");
    if (lua_rawget(L, opts) != LUA_TNIL) {
        size_t len;
        const char *s;
        if (c->is_server) luaL_argerror(L, opts, "option 'ocsp' is for clients (servers: ocsp_staple)");
        if (lua_type(L, -1) != LUA_TSTRING) lunatls_opt_type_error(L, opts, "ocsp", "string");
        s = lua_tolstring(L, -1, &len);
        lunatls_context_data(c->ctx)->ocsp_required = lunatls_choice(L, opts, "ocsp", s, len, modes) == 1;
        SSL_CTX_set_tlsext_status_type(c->ctx, TLSEXT_STATUSTYPE_ocsp);
        SSL_CTX_set_tlsext_status_cb(c->ctx, client_status_callback);
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "ocsp_staple");
    t = lua_rawget(L, opts);
    lua_pop(L, 1);
    if (t == LUA_TNIL) return;
    if (!c->is_server) luaL_argerror(L, opts, "option 'ocsp_staple' is for servers");
    if (t != LUA_TSTRING && t != LUA_TFUNCTION)
        lunatls_opt_push(L, opts, "ocsp_staple", LUA_TFUNCTION, "string or function");
    SSL_CTX_set_tlsext_status_cb(c->ctx, server_status_callback);
}

/* conn:ocsp_status() -> "good" | "revoked" | "unknown" | "none" | "invalid", message */
int lunatls_conn_ocsp_status(lua_State *L) {
    lunatls_Conn *c = lunatls_checkconn(L, 1);
    lua_pushstring(L, status_words[c->ocsp_status]);
    lua_pushstring(L, c->ocsp_message != NULL ? c->ocsp_message : "no OCSP response was checked");
    return 2;
}

/* The message of a handshake that "require" failed. */
const char *lunatls_ocsp_failure(const lunatls_Conn *c) {
    return c->ocsp_message != NULL ? c->ocsp_message : "no OCSP response was checked";
}
