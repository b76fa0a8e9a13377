/* Session tickets that several processes (or hosts) share: option
 * ticket_keys, a string of 80 random bytes or a list of them. The first
 * key encrypts new tickets and every key decrypts, so keys can be rotated:
 * put a new key first, keep the old ones until their tickets expire.
 *
 * A key is 16 bytes of name (sent in the ticket, to find the key), 32 of
 * HMAC-SHA256 key and 32 of AES-256-CBC key: the layout nginx's
 * ssl_session_ticket_key files use. Without ticket_keys OpenSSL makes
 * random keys per context, and tickets resume only in this process. */
#include "lunatls.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define NAME_LEN 16
#define HMAC_OFFSET 16
#define AES_OFFSET 48

static int set_mac_key(EVP_MAC_CTX *hctx, const unsigned char *key) {
    static char digest[] = "SHA256";
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)(key + HMAC_OFFSET), 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* The key named `name`, or -1. */
static int find_key(const ContextData *d, const unsigned char *name) {
    size_t i;
    for (i = 0; i < d->ticket_key_count; i++)
        if (memcmp(d->ticket_keys[i], name, NAME_LEN) == 0) return (int)i;
    return -1;
}

/* OpenSSL's ticket key callback: 1 (encrypt, or decrypt with the current
 * key), 2 (decrypted with an older key: issue a new ticket), 0 (no such
 * key: a full handshake), -1 (failure). The keys are those of the context
 * the connection was made from: OpenSSL keeps tickets there. */
static int ticket_key_callback(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                               EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc) {
    const lunatls_Conn *c = (const lunatls_Conn *)SSL_get_app_data(ssl);
    const ContextData *d = c != NULL ? lunatls_context_data(c->first_ctx) : NULL;
    const unsigned char *key;
    int i;
    if (d == NULL || d->ticket_key_count == 0) return -1;
    if (enc) {
        key = d->ticket_keys[0];
        memcpy(key_name, key, NAME_LEN);
        if (RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key + AES_OFFSET, iv) != 1 ||
            !set_mac_key(hctx, key))
            return -1;
        return 1;
    }
    if ((i = find_key(d, key_name)) < 0) return 0;
    key = d->ticket_keys[i];
    if (!set_mac_key(hctx, key) ||
        EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key + AES_OFFSET, iv) != 1)
        return -1;
    return i == 0 ? 1 : 2;
}

/* Checks entry `value` (on the stack top) is one key. */
static const char *check_key(lua_State *L, int opts) {
    size_t len = 0;
    const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (key == NULL || len != TICKET_KEY_LEN)
        luaL_argerror(L, opts, "option 'ticket_keys': keys are strings of exactly 80 bytes");
    return key;
}

/* Reads option ticket_keys (a key or a list of keys) into the context.
 * Returns whether it was given. */
int lunatls_set_ticket_keys(lua_State *L, SSL_CTX *ctx, int opts) {
    ContextData *d = lunatls_context_data(ctx);
    lua_Integer i, n = lunatls_opt_strings(L, opts, "ticket_keys");
    int list = lua_gettop(L);
    if (n < 0) return 0;
    if (n == 0)
        luaL_argerror(L, opts, "option 'ticket_keys': a key or a list of at least one key expected");
    d->ticket_keys = OPENSSL_zalloc((size_t)n * TICKET_KEY_LEN);
    if (d->ticket_keys == NULL) luaL_error(L, "new_context: out of memory");
    d->ticket_key_count = (size_t)n;
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        memcpy(d->ticket_keys[i - 1], check_key(L, opts), TICKET_KEY_LEN);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_callback);
    return 1;
}
