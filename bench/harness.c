/* The C reference for lunatls's benchmark: the same OpenSSL work, no Lua.
 *
 * A client and a server live in one process, each SSL on its own BIO pair
 * (17 KiB each way), exactly as `ctx:new_conn{}` builds them; the program
 * moves bytes between the two network ends the way an application must
 * (read them out of one end into its own memory, write them into the other)
 * after every TLS call (a bulk stream: whenever the writer's pair is full,
 * want_write). Each step makes the OpenSSL calls lunatls's C code makes
 * for the matching Lua call (src/conn.c, src/bio.c), in the same order: what
 * is left between the two is the cost of the binding (argument checks, Lua
 * strings, the interpreter running the application, the garbage collector).
 * The contexts are configured as src/context.c does for
 * `new_context{mode = "client", cafile = ...}` and
 * `new_context{mode = "server", certificate = ..., key = ...}`, and each
 * client connection as `new_conn{server_name = "localhost"}` (SNI plus the
 * host-name check, never against the subject CN, no partial wildcards).
 *
 *   harness WORKLOAD N [FIXTURES]
 *
 * WORKLOAD: handshake | resume | bulk16k | bulk1k | bulk64 | msg1k | memory |
 * bare_client | bare_server (memory: one idle end with no BIO, OpenSSL's floor),
 * and over loopback TCP: sock_handshake | sock_bulk16k | sock_bulk1k |
 * sock_bulk64 | sock_msg1k (each SSL on its BIO pair, the application moving
 * the bytes with recv/send: what lunatls's socket transport does) and the
 * same with tcp_ (SSL_set_fd: OpenSSL on the socket, reading ahead: lunatls's fd
 * mode as its stream (and the fd transport) uses it).
 * N counts handshakes, writes, messages, or (memory) connections held open.
 * Prints one line: RESULT impl=c workload=... n=... seconds=... rate=... unit=...
 * Time is process CPU time of the measured loop only (set-up excluded). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define PAIR_SIZE (17 * 1024) /* lunatls's default BIO pair buffer */
#define RECORD_MAX 16384      /* conn:read()'s default max */
#define HOST "localhost"

static const char *fixtures = "spec/fixtures";

static void die(const char *what) {
    fprintf(stderr, "harness: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *fixture(const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", fixtures, name);
    return path;
}

/* ---- contexts: what src/context.c configures ---- */

static void common_settings(SSL_CTX *ctx) {
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, 0))
        die("versions");
}

static int no_password(char *buf, int size, int rwflag, void *userdata) {
    (void)buf, (void)size, (void)rwflag, (void)userdata;
    return 0;
}

static SSL_CTX *new_server_ctx(void) {
    static const unsigned char id_context[] = "lunatls";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    EVP_PKEY *pkey;
    BIO *bio;
    if (ctx == NULL) die("SSL_CTX_new");
    common_settings(ctx);
    if (SSL_CTX_use_certificate_chain_file(ctx, fixture("server.pem")) != 1) die("certificate");
    bio = BIO_new_file(fixture("server.key"), "r");
    pkey = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL) : NULL;
    BIO_free(bio);
    if (pkey == NULL || SSL_CTX_use_PrivateKey(ctx, pkey) != 1) die("key");
    EVP_PKEY_free(pkey);
    if (SSL_CTX_check_private_key(ctx) != 1) die("key mismatch");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    ERR_clear_error();
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, id_context, sizeof id_context - 1);
    return ctx;
}

static SSL_CTX *new_client_ctx(void) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) die("SSL_CTX_new");
    common_settings(ctx);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_file(ctx, fixture("ca.pem")) != 1) die("cafile");
    ERR_clear_error();
    return ctx;
}

/* ---- connections: what ctx:new_conn{} builds ---- */

typedef struct {
    SSL *ssl;
    BIO *net; /* the network end the application holds; NULL on a socket (fd mode) */
    int fd;   /* over TCP: the socket; -1 in process */
} End;

/* fd: -1 for a BIO pair; a socket for fd mode (OpenSSL reads and writes
 * it); a BIO pair over a socket is end_open then e->fd = socket. */
static void end_open_on(End *e, SSL_CTX *ctx, int is_server, SSL_SESSION *session, int fd) {
    BIO *inner;
    ERR_clear_error();
    e->ssl = SSL_new(ctx);
    e->net = NULL;
    e->fd = fd;
    if (e->ssl == NULL) die("SSL_new");
    SSL_set_app_data(e->ssl, e);
    if (is_server) SSL_set_accept_state(e->ssl);
    else SSL_set_connect_state(e->ssl);
    if (fd >= 0) {
        if (SSL_set_fd(e->ssl, fd) != 1) die("SSL_set_fd");
        SSL_set_read_ahead(e->ssl, 1); /* as the stream's fd transport does */
    } else {
        if (!BIO_new_bio_pair(&inner, PAIR_SIZE, &e->net, PAIR_SIZE)) die("BIO_new_bio_pair");
        SSL_set_bio(e->ssl, inner, inner);
    }
    if (!is_server) {
        X509_VERIFY_PARAM *param = SSL_get0_param(e->ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
                                                   X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, HOST) == 1) die("not a host name");
        ERR_clear_error();
        if (SSL_set_tlsext_host_name(e->ssl, HOST) != 1 || SSL_set1_host(e->ssl, HOST) != 1)
            die("server name");
        if (session != NULL && SSL_set_session(e->ssl, session) != 1) die("SSL_set_session");
    }
}

static void end_open(End *e, SSL_CTX *ctx, int is_server, SSL_SESSION *session) {
    end_open_on(e, ctx, is_server, session, -1);
}

/* conn:close() (and the collector freeing the network end, which lunatls
 * empties at close). */
static void end_close(End *e) {
    SSL_set_shutdown(e->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(e->ssl); /* frees the inner end of the pair */
    BIO_free(e->net);
    if (e->fd >= 0) close(e->fd);
    e->ssl = NULL;
    e->net = NULL;
    e->fd = -1;
}

/* conn.c's clear_errors: empty the error queue before each SSL_* call. */
static void clear_errors(void) {
    if (ERR_peek_error() != 0) ERR_clear_error();
    errno = 0;
}

/* bio:read(): the bytes pending in a network end, copied once out of the
 * ring (BIO_nread0/BIO_nread) into the application's memory; 0 when empty
 * (then "want_read" or "closed" per BIO_eof). */
static size_t net_read(BIO *bio, char *out, size_t max) {
    size_t pending = BIO_ctrl_pending(bio), want, done = 0;
    char *p;
    if (pending == 0) {
        (void)BIO_eof(bio);
        return 0;
    }
    want = pending < max ? pending : max;
    while (done < want) { /* one piece, or two when the ring wraps */
        ossl_ssize_t n = BIO_nread0(bio, &p);
        size_t take;
        if (n <= 0) die("net_read");
        take = (size_t)n < want - done ? (size_t)n : want - done;
        memcpy(out + done, p, take);
        BIO_nread(bio, &p, (int)take);
        done += take;
    }
    return want;
}

/* Moves what one side wrote into the other's network end, through the
 * application's memory: `to:write(from:read())`. */
static void pump(BIO *from, BIO *to) {
    static char buf[PAIR_SIZE];
    size_t n = net_read(from, buf, sizeof buf);
    if (n > 0 && BIO_write(to, buf, (int)n) != (int)n) die("pump");
}

/* One SSL call's failure must be a want-status, as lunatls maps it. */
static void expect_want(SSL *ssl, int ret, const char *op) {
    int err = SSL_get_error(ssl, ret);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) die(op);
}

static int handshake_step(End *e) {
    int ret;
    clear_errors();
    ret = SSL_do_handshake(e->ssl);
    if (ret == 1) return 1;
    expect_want(e->ssl, ret, "do_handshake");
    return 0;
}

/* Drives both sides, moving bytes after every call, until both are done. */
static void handshake(End *client, End *server) {
    int client_done = 0, server_done = 0, rounds = 0;
    while (!(client_done && server_done)) {
        if (!client_done) client_done = handshake_step(client);
        pump(client->net, server->net);
        if (!server_done) server_done = handshake_step(server);
        pump(server->net, client->net);
        if (++rounds > 20) die("handshake does not finish");
    }
}

/* conn:read(): one record into a buffer of RECORD_MAX bytes; more records
 * only when they are already buffered (SSL_pending, or bytes in the BIO).
 * Returns the bytes read, 0 on want_read. */
static size_t conn_read(End *e, char *out, size_t max) {
    size_t n = 0, total;
    clear_errors();
    /* Straight into the application's memory: lunatls reads into a buffer
     * on the C stack and copies that into a Lua string, a cost of the
     * binding that this reference does not have. */
    if (!SSL_read_ex(e->ssl, out, max < RECORD_MAX ? max : RECORD_MAX, &n)) {
        expect_want(e->ssl, 0, "read");
        return 0;
    }
    total = n;
    if (n == max || SSL_pending(e->ssl) + BIO_ctrl_pending(SSL_get_rbio(e->ssl)) == 0) return total;
    while (total < max) {
        size_t want = max - total < RECORD_MAX ? max - total : RECORD_MAX;
        if (!SSL_read_ex(e->ssl, out + total, want, &n)) {
            clear_errors();
            break;
        }
        total += n;
    }
    return total;
}

/* Reads until want_read, as an event loop does; returns the bytes read. */
static size_t read_all(End *e) {
    static char buf[RECORD_MAX];
    size_t total = 0, n;
    while ((n = conn_read(e, buf, sizeof buf)) > 0) total += n;
    return total;
}

/* conn:write(): SSL_write_ex until all is taken or a call fails. Returns
 * the bytes taken, 0 on want_write (the pair is full). */
static size_t conn_write(End *e, const char *data, size_t len) {
    size_t total = 0, n;
    int ret = 1;
    clear_errors();
    while (total < len && (ret = SSL_write_ex(e->ssl, data + total, len - total, &n)) == 1)
        total += n;
    if (total == 0) expect_want(e->ssl, ret, "write");
    else if (ret != 1) clear_errors();
    return total;
}

static void write_all(End *e, const char *data, size_t len) {
    if (conn_write(e, data, len) != len) die("write");
}

/* A connected pair with the server's session tickets already read. */
static void open_pair(SSL_CTX *cctx, SSL_CTX *sctx, End *client, End *server) {
    end_open(client, cctx, 0, NULL);
    end_open(server, sctx, 1, NULL);
    handshake(client, server);
    read_all(client);
}

/* ---- workloads ---- */

static void report(const char *workload, long n, double seconds, double rate, const char *unit) {
    printf("RESULT impl=c workload=%s n=%ld seconds=%.6f rate=%.3f unit=%s\n", workload, n,
           seconds, rate, unit);
}

static void run_handshakes(SSL_CTX *cctx, SSL_CTX *sctx, long n) {
    End client, server;
    double t0 = cpu_seconds(), t;
    long i;
    for (i = 0; i < n; i++) {
        end_open(&client, cctx, 0, NULL);
        end_open(&server, sctx, 1, NULL);
        handshake(&client, &server);
        end_close(&client);
        end_close(&server);
    }
    t = cpu_seconds() - t0;
    report("handshake", n, t, (double)n / t, "hs/s");
}

static void run_resumed(SSL_CTX *cctx, SSL_CTX *sctx, long n) {
    End first_client, first_server, client, server;
    SSL_SESSION *session;
    double t0, t;
    long i;
    /* Kept open until the end: SSL_free without a shutdown would mark the
     * session not resumable (OpenSSL's ssl_clear_bad_session). */
    open_pair(cctx, sctx, &first_client, &first_server);
    session = SSL_get1_session(first_client.ssl);
    t0 = cpu_seconds();
    for (i = 0; i < n; i++) {
        end_open(&client, cctx, 0, session);
        end_open(&server, sctx, 1, NULL);
        handshake(&client, &server);
        if (!SSL_session_reused(client.ssl)) die("session not reused");
        /* A clean close (our close_notify): SSL_free after none would mark
         * the shared session not resumable. */
        clear_errors();
        if (SSL_shutdown(client.ssl) != 0) die("shutdown");
        end_close(&client);
        end_close(&server);
    }
    t = cpu_seconds() - t0;
    SSL_SESSION_free(session);
    end_close(&first_client);
    end_close(&first_server);
    report("resume", n, t, (double)n / t, "hs/s");
}

/* Streams n writes of size bytes: the client writes until its BIO pair is
 * full (want_write); then the application moves the bytes to the server,
 * which reads until want_read, and the client writes the same chunk again. */
static void run_bulk(SSL_CTX *cctx, SSL_CTX *sctx, const char *workload, size_t size, long n) {
    End client, server;
    char *chunk = malloc(size);
    size_t got = 0, taken;
    double t0, t;
    long written = 0;
    if (chunk == NULL) die("malloc");
    memset(chunk, 'x', size);
    open_pair(cctx, sctx, &client, &server);
    t0 = cpu_seconds();
    while (written < n) {
        taken = conn_write(&client, chunk, size);
        if (taken == size) {
            written++;
        } else if (taken == 0) {
            pump(client.net, server.net);
            got += read_all(&server);
        } else {
            die("bulk: partial write");
        }
    }
    pump(client.net, server.net);
    got += read_all(&server);
    t = cpu_seconds() - t0;
    if (got != size * (size_t)n) die("bulk: bytes lost");
    end_close(&client);
    end_close(&server);
    free(chunk);
    report(workload, n, t, (double)got / t / (1024.0 * 1024.0), "MiB/s");
}

/* n messages of 1 KiB, each moved and read before the next is written:
 * the cost of every call, not amortised over a stream. */
static void run_messages(SSL_CTX *cctx, SSL_CTX *sctx, long n) {
    End client, server;
    char chunk[1024];
    size_t got = 0;
    double t0, t;
    long i;
    memset(chunk, 'x', sizeof chunk);
    open_pair(cctx, sctx, &client, &server);
    t0 = cpu_seconds();
    for (i = 0; i < n; i++) {
        write_all(&client, chunk, sizeof chunk);
        pump(client.net, server.net);
        got += read_all(&server);
    }
    t = cpu_seconds() - t0;
    if (got != sizeof chunk * (size_t)n) die("msg1k: bytes lost");
    end_close(&client);
    end_close(&server);
    report("msg1k", n, t, (double)n / t, "msg/s");
}

/* ---- over loopback TCP ----
 * What lunatls_bench.lua's sock_* and tcp_* workloads do, and what the
 * stream layer does over the socket and fd transports: a client and a
 * server in one process on a loopback connection (TCP_NODELAY, both ends
 * nonblocking). In "sock" mode each SSL is on its BIO pair and the
 * application moves the bytes: after each call, what the SSL wrote goes
 * out of the network end into its memory and on with send(); before a
 * read, recv() takes no more than the network end has room for. In "tcp"
 * mode OpenSSL reads and writes the socket itself. Bulk writes go in
 * batches of 64 KiB, then the server reads the batch. */

#define BATCH_BYTES (64 * 1024)

static int tcp_listener(void) {
    struct sockaddr_in addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0)
        die("listen");
    return fd;
}

static void tcp_options(int fd) {
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
        die("socket options");
}

/* A connected pair of sockets: *c the client's, *s the server's. */
static void tcp_pair(int listener, int *c, int *s) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    if (getsockname(listener, (struct sockaddr *)&addr, &len) != 0) die("getsockname");
    *c = socket(AF_INET, SOCK_STREAM, 0);
    if (*c < 0 || connect(*c, (struct sockaddr *)&addr, len) != 0) die("connect");
    *s = accept(listener, NULL, NULL);
    if (*s < 0) die("accept");
    tcp_options(*c);
    tcp_options(*s);
}

/* Waits (at most 10 s: a bench that would hang dies instead) until fd can
 * take bytes. */
static void wait_writable(int fd) {
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 10000) != 1) die("socket does not drain");
}

/* sock mode, after every call: what the SSL wrote, out through the
 * application's memory into the socket (lunatls's driver: push). */
static void sock_flush(End *e) {
    static char buf[PAIR_SIZE];
    size_t n;
    while ((n = net_read(e->net, buf, sizeof buf)) > 0) {
        size_t sent = 0;
        while (sent < n) {
            ssize_t k = send(e->fd, buf + sent, n - sent, MSG_NOSIGNAL);
            if (k > 0) sent += (size_t)k;
            else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) wait_writable(e->fd);
            else die("send");
        }
    }
}

/* sock mode, before a read: what arrived, no more than the network end
 * takes (lunatls's driver: fill). */
static void sock_feed(End *e) {
    static char buf[BATCH_BYTES];
    size_t room = BIO_ctrl_get_write_guarantee(e->net);
    ssize_t k;
    if (room == 0) return;
    k = recv(e->fd, buf, room < sizeof buf ? room : sizeof buf, 0);
    if (k > 0 && BIO_write(e->net, buf, (int)k) != (int)k) die("feed");
    if (k == 0) die("recv: the peer closed");
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) die("recv");
}

static int is_sock_mode(const End *e) {
    return e->net != NULL;
}

static int tcp_handshake_step(End *e) {
    int done;
    if (is_sock_mode(e)) sock_feed(e);
    done = handshake_step(e);
    if (is_sock_mode(e)) sock_flush(e);
    return done;
}

static void tcp_handshake(End *client, End *server) {
    int client_done = 0, server_done = 0, rounds = 0;
    while (!client_done || !server_done) {
        if (!client_done) client_done = tcp_handshake_step(client);
        if (!server_done) server_done = tcp_handshake_step(server);
        if (++rounds > 1000) die("handshake does not finish");
    }
}

/* Reads until `want` bytes in all have arrived. */
static size_t tcp_read_total(End *e, size_t want) {
    size_t got = 0;
    long spins = 0;
    while (got < want) {
        if (is_sock_mode(e)) sock_feed(e);
        got += read_all(e);
        if (++spins > 100000000L) die("read: nothing arrives");
    }
    return got;
}

static void tcp_write(End *e, const char *data, size_t len) {
    write_all(e, data, len);
    if (is_sock_mode(e)) sock_flush(e);
}

/* mode: 's' (sock) or 't' (tcp). A connected pair, the tickets read. */
static void tcp_open(SSL_CTX *cctx, SSL_CTX *sctx, int listener, char mode, End *client,
                     End *server) {
    int c, s;
    tcp_pair(listener, &c, &s);
    if (mode == 's') {
        end_open(client, cctx, 0, NULL);
        end_open(server, sctx, 1, NULL);
        client->fd = c;
        server->fd = s;
    } else {
        end_open_on(client, cctx, 0, NULL, c);
        end_open_on(server, sctx, 1, NULL, s);
    }
    tcp_handshake(client, server);
}

static void run_tcp_handshakes(SSL_CTX *cctx, SSL_CTX *sctx, const char *workload, long n) {
    int listener = tcp_listener();
    End client, server;
    double t0 = cpu_seconds(), t;
    long i;
    for (i = 0; i < n; i++) {
        tcp_open(cctx, sctx, listener, workload[0], &client, &server);
        end_close(&client);
        end_close(&server);
    }
    t = cpu_seconds() - t0;
    close(listener);
    report(workload, n, t, (double)n / t, "hs/s");
}

static void run_tcp_bulk(SSL_CTX *cctx, SSL_CTX *sctx, const char *workload, size_t size, long n) {
    int listener = tcp_listener();
    long batch = BATCH_BYTES / (long)size > 0 ? BATCH_BYTES / (long)size : 1, sent = 0, i;
    char *chunk = malloc(size);
    End client, server;
    size_t got = 0;
    double t0, t;
    if (chunk == NULL) die("malloc");
    memset(chunk, 'x', size);
    tcp_open(cctx, sctx, listener, workload[0], &client, &server);
    read_all(&client);
    t0 = cpu_seconds();
    while (sent < n) {
        long this_batch = batch < n - sent ? batch : n - sent;
        for (i = 0; i < this_batch; i++) tcp_write(&client, chunk, size);
        sent += this_batch;
        got += tcp_read_total(&server, size * (size_t)this_batch);
    }
    t = cpu_seconds() - t0;
    end_close(&client);
    end_close(&server);
    close(listener);
    free(chunk);
    report(workload, n, t, (double)got / t / (1024.0 * 1024.0), "MiB/s");
}

static void run_tcp_messages(SSL_CTX *cctx, SSL_CTX *sctx, const char *workload, long n) {
    int listener = tcp_listener();
    End client, server;
    char chunk[1024];
    size_t got = 0;
    double t0, t;
    long i;
    memset(chunk, 'x', sizeof chunk);
    tcp_open(cctx, sctx, listener, workload[0], &client, &server);
    read_all(&client);
    t0 = cpu_seconds();
    for (i = 0; i < n; i++) {
        tcp_write(&client, chunk, sizeof chunk);
        got += tcp_read_total(&server, sizeof chunk);
    }
    t = cpu_seconds() - t0;
    if (got != sizeof chunk * (size_t)n) die("msg1k: bytes lost");
    end_close(&client);
    end_close(&server);
    close(listener);
    report(workload, n, t, (double)n / t, "msg/s");
}

/* The size of a bulk workload's writes ("bulk16k" -> 16384), 0 if none. */
static size_t bulk_size(const char *name) {
    if (strcmp(name, "bulk16k") == 0) return 16384;
    if (strcmp(name, "bulk1k") == 0) return 1024;
    if (strcmp(name, "bulk64") == 0) return 64;
    return 0;
}

/* sock_* and tcp_* workloads; 0 if workload is not one. */
static int run_over_tcp(SSL_CTX *cctx, SSL_CTX *sctx, const char *workload, long n) {
    const char *rest;
    if (strncmp(workload, "sock_", 5) == 0) rest = workload + 5;
    else if (strncmp(workload, "tcp_", 4) == 0) rest = workload + 4;
    else return 0;
    if (strcmp(rest, "handshake") == 0) run_tcp_handshakes(cctx, sctx, workload, n);
    else if (strcmp(rest, "msg1k") == 0) run_tcp_messages(cctx, sctx, workload, n);
    else if (bulk_size(rest) > 0) run_tcp_bulk(cctx, sctx, workload, bulk_size(rest), n);
    else return 0;
    return 1;
}

/* Resident set size in bytes (what the kernel charges the process). */
static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f == NULL) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/* One small message each way between an established pair. */
static void ping_pong(End *client, End *server) {
    write_all(client, "ping", 4);
    pump(client->net, server->net);
    if (read_all(server) != 4) die("ping");
    write_all(server, "pong", 4);
    pump(server->net, client->net);
    if (read_all(client) != 4) die("pong");
}

/* The process's memory at one moment: heap in use and resident set. */
typedef struct {
    struct mallinfo2 heap;
    long rss;
} MemoryMark;

static MemoryMark memory_mark(void) {
    MemoryMark m;
    m.heap = mallinfo2();
    m.rss = rss_bytes();
    return m;
}

/* The memory workloads' RESULT line: growth since `before`, per end. */
static void report_memory(const char *workload, long ends, MemoryMark before) {
    MemoryMark after = memory_mark();
    printf("RESULT impl=c workload=%s n=%ld rss_per_conn=%.0f heap_per_conn=%.0f unit=B\n", workload,
           ends, (double)(after.rss - before.rss) / (double)ends,
           (double)(after.heap.uordblks - before.heap.uordblks) / (double)ends);
}

/* n idle established connections (n/2 client-server pairs), each having
 * exchanged one small message each way. */
static void run_memory(SSL_CTX *cctx, SSL_CTX *sctx, long n) {
    long pairs = n / 2, i;
    End *ends = calloc((size_t)pairs * 2, sizeof *ends);
    MemoryMark before;
    if (ends == NULL) die("calloc");
    before = memory_mark();
    for (i = 0; i < pairs; i++) {
        End *client = &ends[2 * i], *server = &ends[2 * i + 1];
        open_pair(cctx, sctx, client, server);
        ping_pong(client, server);
    }
    report_memory("memory", pairs * 2, before);
    for (i = 0; i < pairs * 2; i++) end_close(&ends[i]);
    free(ends);
}

/* bare_client, bare_server: n idle established ends of one kind, as
 * run_memory makes them, the other end of each pair closed at once and the
 * kept end's BIOs freed (SSL_set_bio(ssl, NULL, NULL)): what OpenSSL alone
 * holds for an idle end, the floor under any binding's figure for the same
 * end (lunatls_bench.lua memory_client, memory_server). */
static void run_bare(SSL_CTX *cctx, SSL_CTX *sctx, const char *workload, long n) {
    int keep_client = strcmp(workload, "bare_client") == 0;
    SSL **kept = calloc((size_t)n, sizeof *kept);
    MemoryMark before;
    long i;
    if (kept == NULL) die("calloc");
    before = memory_mark();
    for (i = 0; i < n; i++) {
        End client, server, *keep;
        open_pair(cctx, sctx, &client, &server);
        ping_pong(&client, &server);
        keep = keep_client ? &client : &server;
        end_close(keep_client ? &server : &client);
        SSL_set_bio(keep->ssl, NULL, NULL); /* frees the pair's inner end */
        BIO_free(keep->net);
        kept[i] = keep->ssl;
    }
    report_memory(workload, n, before);
    for (i = 0; i < n; i++) SSL_free(kept[i]);
    free(kept);
}

int main(int argc, char **argv) {
    SSL_CTX *cctx, *sctx;
    const char *workload;
    long n;
    if (argc < 3) {
        fprintf(stderr, "usage: harness handshake|resume|bulk16k|bulk1k|bulk64|msg1k|memory"
                        "|bare_client|bare_server"
                        "|sock_...|tcp_... N [fixtures]\n");
        return 2;
    }
    workload = argv[1];
    n = atol(argv[2]);
    if (argc > 3) fixtures = argv[3];
    if (n <= 0) die("N must be positive");
    OPENSSL_init_ssl(0, NULL);
    cctx = new_client_ctx();
    sctx = new_server_ctx();
    if (strcmp(workload, "handshake") == 0) run_handshakes(cctx, sctx, n);
    else if (strcmp(workload, "resume") == 0) run_resumed(cctx, sctx, n);
    else if (bulk_size(workload) > 0) run_bulk(cctx, sctx, workload, bulk_size(workload), n);
    else if (strcmp(workload, "msg1k") == 0) run_messages(cctx, sctx, n);
    else if (strcmp(workload, "memory") == 0) run_memory(cctx, sctx, n);
    else if (strcmp(workload, "bare_client") == 0 || strcmp(workload, "bare_server") == 0)
        run_bare(cctx, sctx, workload, n);
    else if (!run_over_tcp(cctx, sctx, workload, n)) die("unknown workload");
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    return 0;
}
