/* lunatls.Session: a TLS session to resume, exportable as PEM text. */
#include "lunatls.h"

#include <openssl/err.h>
#include <openssl/pem.h>

SSL_SESSION *lunatls_checksession(lua_State *L, int idx) {
    return ((lunatls_Session *)lunatls_checkopen(L, idx, LUNATLS_SESSION))->session;
}

/* Pushes a closed Session: the caller gets its SSL_SESSION only after this
 * allocation (which may raise, or run a finalizer that closes the Conn the
 * session comes from) and stores a reference of its own in ->session. */
lunatls_Session *lunatls_newsession(lua_State *L) {
    lunatls_Session *s = (lunatls_Session *)lua_newuserdatauv(L, sizeof *s, 0);
    s->session = NULL;
    luaL_setmetatable(L, LUNATLS_SESSION);
    return s;
}

/* session:export() -> PEM text ("-----BEGIN SSL SESSION PARAMETERS-----") */
static int session_export(lua_State *L) {
    SSL_SESSION *s = lunatls_checksession(L, 1);
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long len;
    int copied;
    if (bio == NULL || PEM_write_bio_SSL_SESSION(bio, s) != 1) {
        BIO_free(bio);
        ERR_clear_error();
        return luaL_error(L, "export: out of memory");
    }
    len = BIO_get_mem_data(bio, &data);
    copied = lunatls_push_copy(L, data, (size_t)len);
    BIO_free(bio);
    return copied ? 1 : lua_error(L);
}

/* import_session(text) -> session, or nil, message, "config" */
static int session_import(lua_State *L) {
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    BIO *bio;
    lunatls_Session *s;
    luaL_argcheck(L, len <= INT32_MAX, 1, "too long");
    s = lunatls_newsession(L);
    ERR_clear_error();
    bio = BIO_new_mem_buf(text, (int)len);
    s->session = bio != NULL ? PEM_read_bio_SSL_SESSION(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (s->session == NULL) return lunatls_config_error(L, "import_session", "not a session");
    return 1;
}

static int session_is_resumable(lua_State *L) {
    lua_pushboolean(L, SSL_SESSION_is_resumable(lunatls_checksession(L, 1)));
    return 1;
}

static int session_protocol(lua_State *L) {
    int v = SSL_SESSION_get_protocol_version(lunatls_checksession(L, 1));
    lua_pushstring(L, v == TLS1_3_VERSION ? "TLSv1.3" : v == TLS1_2_VERSION ? "TLSv1.2" : "other");
    return 1;
}

static int session_gc(lua_State *L) {
    lunatls_Session *s = (lunatls_Session *)luaL_checkudata(L, 1, LUNATLS_SESSION);
    SSL_SESSION_free(s->session);
    s->session = NULL;
    return 0;
}

static int session_tostring(lua_State *L) {
    lunatls_Session *s = (lunatls_Session *)luaL_checkudata(L, 1, LUNATLS_SESSION);
    /* closed: a finalizer may resurrect a collected Session */
    if (s->session == NULL) return lunatls_tostring_closed(L, LUNATLS_SESSION);
    lua_pushfstring(L, "%s: %p (%s)", LUNATLS_SESSION, (void *)s,
                    SSL_SESSION_is_resumable(s->session) ? "resumable" : "not resumable");
    return 1;
}

void lunatls_open_session(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"export", session_export},
        {"is_resumable", session_is_resumable},
        {"protocol", session_protocol},
        {NULL, NULL},
    };
    static const luaL_Reg metamethods[] = {
        {"__gc", session_gc},
        {"__tostring", session_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"import_session", session_import},
        {NULL, NULL},
    };
    lunatls_newclass(L, LUNATLS_SESSION, methods, metamethods);
    luaL_setfuncs(L, functions, 0);
}
