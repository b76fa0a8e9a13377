/* lunatls private header: object layouts, uservalue slots, shared helpers. */
#ifndef LUNATLS_H
#define LUNATLS_H

#include "compat.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#define LUNATLS_CONTEXT "lunatls.Context"
#define LUNATLS_CONN "lunatls.Conn"
#define LUNATLS_BIO "lunatls.BIO"
#define LUNATLS_CERTIFICATE "lunatls.Certificate"
#define LUNATLS_SESSION "lunatls.Session"
#define LUNATLS_BUFFER "lunatls.Buffer"
#define LUNATLS_POLLER "lunatls.Poller"

/* lunatls.Context: an SSL_CTX. What OpenSSL's callbacks need lives with the
 * SSL_CTX itself (context.c: ContextData), so that it lasts exactly as long
 * as the last connection using it, whatever order finalizers run in. */
typedef struct {
    SSL_CTX *ctx;
    int is_server;
    int check_hostname;   /* client: new_conn insists on a server_name */
} lunatls_Context;

/* What an SSL_CTX carries for its connections' callbacks (context.c):
 * kept in the SSL_CTX's ex_data and freed with it, so it lives as long as
 * any connection that may read it, even when the Lua object was finalized
 * first. */
#define SECRET_LEN 32
#define TICKET_KEY_LEN 80 /* name 16, HMAC key 32, AES key 32 (tickets.c) */
typedef struct {
    unsigned char *alpn;                   /* server: preference list, wire format */
    unsigned int alpn_len;
    unsigned char secret[SECRET_LEN];      /* binds sessions to this context */
    char *ciphers, *ciphersuites, *groups; /* the lists as configured */
    int client_hello;                      /* server: pause after the ClientHello */
    FILE *keylog_file;                     /* keylog = "env": $SSLKEYLOGFILE */
    unsigned char (*ticket_keys)[TICKET_KEY_LEN]; /* ticket_keys: the first encrypts */
    size_t ticket_key_count;
    int ocsp_required;                     /* client: ocsp = "require" */
} ContextData;

/* Uservalue slots of a Context. */
enum { CTX_UV_CALLBACKS = 1, CTX_NUV = 1 };

/* lunatls.Conn: an SSL. */
typedef struct {
    SSL *ssl;
    /* The running thread, set only while a method that can reach an OpenSSL
     * callback runs (never kept: the coroutine may be gone next time). */
    lua_State *L;
    int is_server;
    int fd_mode;
    int fd;               /* fd mode: the descriptor */
    int check_fd;         /* option check_fd: the socket object must still hold fd */
    const int *fd_word;   /* check_fd on a LuaSocket TCP object: where it keeps its
                           * descriptor (conn.c, luasocket_fd_word); else NULL */
    int callback_failed;  /* a Lua callback raised; the error is in CONN_UV_ERROR */
    int return_callback_errors; /* option callback_errors = "return" (conn.c, end_call) */
    int failed;           /* the connection failed; {message, code} is in CONN_UV_FAILURE */
    int unreported;       /* UNREPORTED_READ/_WRITE from the moment a read or write moved
                           * bytes until it returns them (conn.c: a callback's error then
                           * fails the Conn, end_call; still set at the next call, an
                           * error raised in between, out of memory, lost them) */
    int hello;            /* server: where the ClientHello stands (hello.c: HELLO_*) */
    SSL_CTX *first_ctx;   /* server: the context it was made from, which keeps the
                           * session cache and ticket keys (borrowed: the SSL holds it) */
    const SSL_SESSION *session_seen; /* read: the session when buffers were last given back */
    int ocsp_status;      /* client: OCSP_* of the server's staple (revocation.c) */
    const char *ocsp_message; /* ... and why (a static string) */
} lunatls_Conn;

/* Which call holds bytes it moved and has not returned yet (lunatls_Conn.unreported). */
enum { UNREPORTED_NONE, UNREPORTED_READ, UNREPORTED_WRITE };

/* What a client made of the server's OCSP staple (revocation.c). */
enum { OCSP_NONE, OCSP_GOOD, OCSP_REVOKED, OCSP_UNKNOWN, OCSP_INVALID };

/* Where a server connection's ClientHello stands (hello.c). */
enum {
    HELLO_NONE,    /* not read yet */
    HELLO_PAUSED,  /* read; do_handshake said "want_certificate" (client_hello = true) */
    HELLO_REFUSED, /* paused, then conn:set_context(false) */
    HELLO_CHOSEN   /* the context is chosen; a later ClientHello must ask for the same name */
};

/* Uservalue slots of a Conn: what it keeps alive. */
enum {
    CONN_UV_CONTEXT = 1,   /* the Context it was made from */
    CONN_UV_NETBIO,        /* the network end of its own BIO pair */
    CONN_UV_SNI_CONTEXT,   /* a Context chosen by the servername callback */
    CONN_UV_SERVER_NAME,   /* server: the SNI of the ClientHello (hello.c) */
    CONN_UV_HELLO,         /* server: the ClientHello as a table, when paused (hello.c) */
    CONN_UV_TRANSPORT,     /* the socket object given as fd, if any */
    CONN_UV_ERROR,         /* an error raised by a Lua callback */
    CONN_UV_FAILURE,       /* the last I/O failure: {message, code} (errors.c) */
    CONN_NUV = CONN_UV_FAILURE
};

/* lunatls.BIO: one end of a BIO pair (we own one reference). */
typedef struct {
    BIO *bio;
} lunatls_BIO;

typedef struct {
    X509 *x509;
} lunatls_Certificate;

typedef struct {
    SSL_SESSION *session;
} lunatls_Session;

/* lunatls.Buffer (buffer.c): capacity bytes, inline after the struct; the
 * first len of them are what it holds. */
typedef struct {
    char *bytes;
    size_t len, capacity;
} lunatls_Buffer;

/* Upvalues of every method in a class's __index table (lunatls_newclass):
 * the class's metatable, so that a method checks its self with one pointer
 * comparison; the status words, pushed without hashing a C string; and the
 * metatables of the classes methods take as arguments (a BIO end, a
 * Buffer), checked the same way (lunatls_checkclass). */
enum {
    UPV_METATABLE = 1,
    UPV_DONE,
    UPV_WANT_READ,
    UPV_WANT_WRITE,
    UPV_CLOSED,
    UPV_WANT_CERTIFICATE,
    UPV_BIO_CLASS,
    UPV_BUFFER_CLASS,
    UPV_COUNT = UPV_BUFFER_CLASS
};

/* How a status word is returned: handshake and shutdown give it as the first
 * (truthy) value, read and write as nil, status. */
typedef enum { STATUS_FIRST, STATUS_SECOND } lunatls_StatusStyle;

/* errors.c */
int lunatls_io_result(lua_State *L, lunatls_Conn *c, int ret, const char *op,
                      lunatls_StatusStyle style, int *fatal);
int lunatls_push_status(lua_State *L, int word, lunatls_StatusStyle style);
int lunatls_config_error(lua_State *L, const char *what, const char *detail);
int lunatls_fail(lua_State *L, const char *message, const char *code);
const char *lunatls_last_reason(void);

/* options.c: options tables, read once and anchored */
void lunatls_options_snapshot(lua_State *L, int arg, const char *const known[]);
int lunatls_opt_push(lua_State *L, int arg, const char *name, int type, const char *expected);
const char *lunatls_opt_string(lua_State *L, int arg, const char *name, size_t *len);
const char *lunatls_opt_bytes(lua_State *L, int arg, const char *name, size_t *len);
int lunatls_opt_boolean(lua_State *L, int arg, const char *name, int def);
int lunatls_opt_choice(lua_State *L, int arg, const char *name, const char *def,
                       const char *const choices[]);
int lunatls_choice(lua_State *L, int arg, const char *name, const char *s, size_t len,
                   const char *const choices[]);
lua_Integer lunatls_opt_list(lua_State *L, int arg, const char *name);
lua_Integer lunatls_opt_strings(lua_State *L, int arg, const char *name);
int lunatls_opt_type_error(lua_State *L, int arg, const char *name, const char *expected);
const char *lunatls_opttext(lua_State *L, int arg, const char *def);
const char *lunatls_push_quoted(lua_State *L, const char *s, size_t len);
const char *lunatls_push_bounded(lua_State *L, const char *s);

/* source.c: certificates and keys from PEM text, DER bytes or files */
const char *lunatls_opt_source(lua_State *L, int opts, const char *name, size_t *len);
const char *lunatls_check_source(lua_State *L, int arg, size_t *len);
const char *lunatls_source_name(const char *s, size_t len, int may_be_path);
int lunatls_path_problem(lua_State *L, const char *what, const char *path, int want_dir);
STACK_OF(X509) *lunatls_load_certificates(lua_State *L, const char *what, const char *s,
                                          size_t len, int may_be_path, int *failed);
int lunatls_load_crls(lua_State *L, const char *s, size_t len, STACK_OF(X509_CRL) *out);
void lunatls_check_password(lua_State *L);
EVP_PKEY *lunatls_load_key(lua_State *L, const char *s, size_t len, int *failed);
int lunatls_load_pkcs12(lua_State *L, const char *s, size_t len, EVP_PKEY **pkey,
                        STACK_OF(X509) **certs);

/* context.c */
lunatls_Context *lunatls_checkcontext(lua_State *L, int idx);
ContextData *lunatls_context_data(const SSL_CTX *ctx);
const char *lunatls_push_alpn_wire(lua_State *L, int list, int arg, size_t *len);
int lunatls_adopt_context(SSL *ssl, SSL_CTX *chosen);
int lunatls_context_pauses(const SSL_CTX *ctx);
int lunatls_bind_sessions(SSL *ssl, const char *server_name, size_t len);
void lunatls_open_context(lua_State *L);

/* pair.c: BIO pairs whose rings exist only while they hold bytes */
int lunatls_new_pair(lua_State *L, BIO **a, BIO **b, size_t size);
void lunatls_open_pair(lua_State *L);
void lunatls_pair_release_cache(lua_State *L);

/* socket.c: the BIO of fd mode, OpenSSL's socket BIO without SIGPIPE */
BIO *lunatls_new_socket_bio(lua_State *L, int fd);
void lunatls_open_socket(lua_State *L);

/* bio.c */
lunatls_BIO *lunatls_checkbio(lua_State *L, int idx);
lunatls_BIO *lunatls_newbio(lua_State *L, BIO *bio);
void lunatls_open_bio(lua_State *L);

/* conn.c */
lunatls_Conn *lunatls_checkconn(lua_State *L, int idx);
lunatls_Conn *lunatls_checkconn_idle(lua_State *L);
int lunatls_conn_new(lua_State *L);
void lunatls_open_conn(lua_State *L);

/* callback.c: running Lua callbacks from inside OpenSSL */
lunatls_Conn *lunatls_callback_conn(const SSL *ssl);
int lunatls_call_protected(lunatls_Conn *c, lua_CFunction f, void *arg);
int lunatls_push_callback(lua_State *L, const char *name);
void lunatls_keylog_callback(const SSL *ssl, const char *line);

/* hello.c: the server's ClientHello (SNI, the servername callback) */
int lunatls_client_hello_callback(SSL *ssl, int *alert, void *arg);
int lunatls_conn_client_hello(lua_State *L);
int lunatls_conn_set_context(lua_State *L);

/* tickets.c: session tickets shared between processes */
int lunatls_set_ticket_keys(lua_State *L, SSL_CTX *ctx, int opts);

/* revocation.c: CRLs and OCSP stapling */
int lunatls_set_crls(lua_State *L, SSL_CTX *ctx, int opts);
void lunatls_set_ocsp(lua_State *L, lunatls_Context *c, int opts);
int lunatls_conn_ocsp_status(lua_State *L);
const char *lunatls_ocsp_failure(const lunatls_Conn *c);

/* binding.c */
int lunatls_conn_channel_binding(lua_State *L);
int lunatls_ack_servername(SSL *ssl, int *alert, void *arg);
int lunatls_alpn_callback(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg);

/* x509.c */
lunatls_Certificate *lunatls_newcertificate(lua_State *L);
int lunatls_push_names_text(lua_State *L, X509 *x);
void lunatls_open_certificate(lua_State *L);

/* session.c */
lunatls_Session *lunatls_newsession(lua_State *L);
SSL_SESSION *lunatls_checksession(lua_State *L, int idx);
void lunatls_open_session(lua_State *L);

/* buffer.c */
lunatls_Buffer *lunatls_testbuffer(lua_State *L, int idx);
lunatls_Buffer *lunatls_checkbuffer(lua_State *L, int idx);
void lunatls_open_buffer(lua_State *L);

/* poller.c */
void lunatls_open_poller(lua_State *L);

/* core.c: shared helpers for object types */
void *lunatls_checkopen(lua_State *L, int idx, const char *tname);
void lunatls_clear_errors(void);
void *lunatls_checkself(lua_State *L, const char *tname);
void *lunatls_testclass(lua_State *L, int idx, int upv, const char *tname);
void *lunatls_checkclass(lua_State *L, int idx, int upv, const char *tname);
void *lunatls_checkopen_class(lua_State *L, int idx, int upv, const char *tname);
void lunatls_pushword(lua_State *L, int word);
void lunatls_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                      const luaL_Reg *metamethods);
int lunatls_tostring_closed(lua_State *L, const char *tname);
const char *lunatls_check_range(lua_State *L, int arg, size_t *len);
int lunatls_push_copy(lua_State *L, const char *s, size_t len);

#endif
