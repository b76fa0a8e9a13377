/* Every failure message and code lunatls returns is built here.
 *
 * Codes (the third value of a failure) are a closed set:
 *   "verify"   the peer's certificate failed verification (or was missing)
 *   "protocol" TLS protocol error, alert from the peer, bad record
 *   "eof"      the peer vanished without close_notify
 *   "closed"   the peer sent close_notify
 *   "syscall"  the operating system reported an error (fd mode)
 *   "config"   a certificate, key, CA or option that will not load
 *   "callback" a Lua callback of the connection raised an error
 *
 * OpenSSL's error queue is per thread and shared by every connection, so the
 * callers clear it before each SSL_* call and we drain it here. */
#include "lunatls.h"

#include <errno.h>
#include <string.h>

#include <openssl/err.h>

/* The reason of the most recent queued error, or NULL. */
const char *lunatls_last_reason(void) {
    unsigned long e = ERR_peek_last_error();
    const char *reason;
    if (e == 0) return NULL;
    reason = ERR_reason_error_string(e);
    return reason != NULL ? reason : "unknown error";
}

int lunatls_fail(lua_State *L, const char *message, const char *code) {
    ERR_clear_error();
    luaL_pushfail(L);
    lua_pushstring(L, message);
    lua_pushstring(L, code);
    return 3;
}

/* Pushes the most useful account of a failed load in the error queue, and
 * drains it: an OS error ("No such file or directory") wins; otherwise the
 * first specific reason, with OpenSSL's hint ("maybe wrong password"). */
static void push_load_reason(lua_State *L) {
    const char *data, *reason = NULL, *hint = NULL;
    int flags, os_error = 0;
    unsigned long e;
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (ERR_SYSTEM_ERROR(e)) {
            if (os_error == 0) os_error = ERR_GET_REASON(e);
            continue;
        }
        if (reason == NULL && !ERR_COMMON_ERROR(e)) reason = ERR_reason_error_string(e);
        if (hint == NULL && (flags & ERR_TXT_STRING) && data[0] != '\0') hint = data;
    }
    if (os_error != 0)
        lua_pushstring(L, strerror(os_error));
    else if (reason != NULL && hint != NULL)
        lua_pushfstring(L, "%s (%s)", reason, hint);
    else
        lua_pushstring(L, reason != NULL ? reason : hint != NULL ? hint : "unknown error");
}

/* nil, "<what>: <detail>: <reason>", "config"; a long detail (a path or a
 * list the caller gave) is cut short. */
int lunatls_config_error(lua_State *L, const char *what, const char *detail) {
    if (detail != NULL) lua_pushfstring(L, "%s: %s: ", what, lunatls_push_bounded(L, detail));
    else lua_pushfstring(L, "%s: ", what);
    push_load_reason(L);
    lua_concat(L, 2);
    return lunatls_fail(L, lua_tostring(L, -1), "config");
}

static int is_reason(unsigned long e, int reason) {
    return e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == reason;
}

/* word: UPV_WANT_READ... (see lunatls_pushword) */
int lunatls_push_status(lua_State *L, int word, lunatls_StatusStyle style) {
    if (style == STATUS_SECOND) luaL_pushfail(L);
    lunatls_pushword(L, word);
    return style == STATUS_SECOND ? 2 : 1;
}

/* The certificate-related failures: verification of the peer's chain, or a
 * peer that did not send the certificate we demanded. */
static int is_name_mismatch(long v) {
    return v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH;
}

/* Pushes " (expected 'x'; the certificate is for a, b)" for a name
 * mismatch: what was checked, and what the certificate says (subject CNs
 * are never checked, so only its subject alternative names count). */
/* Pushes the host name or IP address the connection checks. */
static void push_checked_name(lua_State *L, X509_VERIFY_PARAM *param) {
    const char *host = X509_VERIFY_PARAM_get0_host(param, 0);
    char *ip;
    int copied;
    if (host != NULL) {
        lua_pushstring(L, host);
        return;
    }
    if ((ip = X509_VERIFY_PARAM_get1_ip_asc(param)) == NULL) {
        lua_pushliteral(L, "?");
        return;
    }
    copied = lunatls_push_copy(L, ip, strlen(ip));
    OPENSSL_free(ip);
    if (!copied) lua_error(L);
}

static void push_mismatch_detail(lua_State *L, lunatls_Conn *c) {
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c->ssl);
    int base = lua_gettop(L), names = 0;
    push_checked_name(L, SSL_get0_param(c->ssl));
    if (chain != NULL && sk_X509_num(chain) > 0)
        names = lunatls_push_names_text(L, sk_X509_value(chain, 0));
    if (names > 0)
        lua_pushfstring(L, " (expected '%s'; the certificate is for %s)", lua_tostring(L, base + 1),
                        lua_tostring(L, base + 2));
    else
        lua_pushfstring(L, " (expected '%s'; the certificate has no subject alternative name)",
                        lua_tostring(L, base + 1));
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
}

static int verify_failure(lua_State *L, lunatls_Conn *c, unsigned long e, const char *op) {
    if (is_reason(e, SSL_R_INVALID_STATUS_RESPONSE) && !c->is_server) { /* ocsp = "require" */
        lua_pushfstring(L, "%s: OCSP: %s", op, lunatls_ocsp_failure(c));
    } else if (is_reason(e, SSL_R_CERTIFICATE_VERIFY_FAILED)) {
        long v = SSL_get_verify_result(c->ssl);
        lua_pushfstring(L, "%s: certificate verify failed: %s", op,
                        X509_verify_cert_error_string(v));
        if (is_name_mismatch(v) && !c->is_server) {
            push_mismatch_detail(L, c);
            lua_concat(L, 2);
        }
    } else {
        lua_pushfstring(L, "%s: %s", op, ERR_reason_error_string(e));
    }
    return lunatls_fail(L, lua_tostring(L, -1), "verify");
}

static int is_bio_reason(unsigned long e, int reason) {
    return e != 0 && ERR_GET_LIB(e) == ERR_LIB_BIO && ERR_GET_REASON(e) == reason;
}

/* A BIO pair end whose other half was freed (the application closed the
 * network end) fails with BIO_R_UNINITIALIZED: the transport is gone. */
static int is_closed_bio_pair(unsigned long e) {
    return is_bio_reason(e, BIO_R_UNINITIALIZED);
}

/* The error that explains a failure: the last one queued, unless that is a
 * BIO pair refusing the alert OpenSSL sends about the failure
 * (BIO_R_BROKEN_PIPE: the pair's writing side is shut, as a memory pipe
 * closed by its other end leaves it): then the first, the cause (an
 * unexpected eof, say). */
static unsigned long failure_cause(void) {
    unsigned long last = ERR_peek_last_error();
    return is_bio_reason(last, BIO_R_BROKEN_PIPE) ? ERR_peek_error() : last;
}

/* "<op>: <reason>" for e. OpenSSL has no text for an alert number it does
 * not know (a peer may send any of 256): say what it was rather than
 * "(null)"; anything else without text gets OpenSSL's error code. */
static void push_reason(lua_State *L, const char *op, unsigned long e) {
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    int r = ERR_GET_REASON(e);
    char code[256];
    if (reason != NULL) {
        lua_pushfstring(L, "%s: %s", op, reason);
    } else if (e == 0) {
        lua_pushfstring(L, "%s: TLS failure, no reason given by OpenSSL", op);
    } else if (ERR_GET_LIB(e) == ERR_LIB_SSL && r >= SSL_AD_REASON_OFFSET &&
               r <= SSL_AD_REASON_OFFSET + 255) {
        lua_pushfstring(L, "%s: the peer sent TLS alert %d, which OpenSSL does not know", op,
                        r - SSL_AD_REASON_OFFSET);
    } else {
        ERR_error_string_n(e, code, sizeof code);
        lua_pushfstring(L, "%s: %s", op, code);
    }
}

static int ssl_error(lua_State *L, lunatls_Conn *c, const char *op) {
    unsigned long e = failure_cause();
    if (is_closed_bio_pair(e)) {
        lua_pushfstring(L, "%s: unexpected eof: the network end of the BIO pair was closed", op);
        return lunatls_fail(L, lua_tostring(L, -1), "eof");
    }
    if (is_bio_reason(e, BIO_R_BROKEN_PIPE)) {
        lua_pushfstring(L, "%s: the transport is closed: its BIO pair was shut down", op);
        return lunatls_fail(L, lua_tostring(L, -1), "eof");
    }
    if (is_reason(e, SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        lua_pushfstring(L, "%s: unexpected eof: the peer closed the connection "
                           "without close_notify", op);
        return lunatls_fail(L, lua_tostring(L, -1), "eof");
    }
    if (is_reason(e, SSL_R_CERTIFICATE_VERIFY_FAILED) ||
        is_reason(e, SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) ||
        (is_reason(e, SSL_R_INVALID_STATUS_RESPONSE) && !c->is_server))
        return verify_failure(L, c, e, op);
    push_reason(L, op, e);
    return lunatls_fail(L, lua_tostring(L, -1), "protocol");
}

static int syscall_error(lua_State *L, lunatls_Conn *c, const char *op, int saved_errno) {
    if (ERR_peek_last_error() != 0) return ssl_error(L, c, op);
    if (c->fd_mode && saved_errno != 0) {
        lua_pushfstring(L, "%s: %s", op, strerror(saved_errno));
        return lunatls_fail(L, lua_tostring(L, -1), "syscall");
    }
    lua_pushfstring(L, "%s: unexpected eof: the peer closed the connection "
                       "without close_notify", op);
    return lunatls_fail(L, lua_tostring(L, -1), "eof");
}

/* Errors that say a call was made at the wrong moment (write after our
 * close_notify, shutdown during the handshake, a write retried with fewer
 * bytes) and leave the connection as it was: they are reported, not kept,
 * so reading after our shutdown and finishing the shutdown still work. */
static int is_usage_error(unsigned long e) {
    return is_reason(e, SSL_R_PROTOCOL_IS_SHUTDOWN) || is_reason(e, SSL_R_SHUTDOWN_WHILE_IN_INIT) ||
           is_reason(e, SSL_R_BAD_WRITE_RETRY) || is_reason(e, SSL_R_UNINITIALIZED);
}

/* Maps a failed SSL_do_handshake/read/write/shutdown (ret <= 0) to Lua
 * results; *fatal says whether the connection is finished (OpenSSL allows
 * no more I/O on it). What follows from that is conn.c's business. */
int lunatls_io_result(lua_State *L, lunatls_Conn *c, int ret, const char *op,
                      lunatls_StatusStyle style, int *fatal) {
    int saved_errno = errno;
    *fatal = 0;
    switch (SSL_get_error(c->ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        return lunatls_push_status(L, UPV_WANT_READ, style);
    case SSL_ERROR_WANT_WRITE:
        return lunatls_push_status(L, UPV_WANT_WRITE, style);
    case SSL_ERROR_WANT_CLIENT_HELLO_CB: /* paused for conn:set_context (hello.c) */
        return lunatls_push_status(L, UPV_WANT_CERTIFICATE, style);
    case SSL_ERROR_ZERO_RETURN:
        if (style == STATUS_SECOND) return lunatls_push_status(L, UPV_CLOSED, style);
        lua_pushfstring(L, "%s: the peer closed the connection (close_notify)", op);
        return lunatls_fail(L, lua_tostring(L, -1), "closed");
    case SSL_ERROR_SYSCALL:
        *fatal = 1;
        return syscall_error(L, c, op, saved_errno);
    default: /* SSL_ERROR_SSL, and the WANT_* of callbacks we never install */
        *fatal = !is_usage_error(ERR_peek_last_error());
        return ssl_error(L, c, op);
    }
}
