/* LD_PRELOAD shim for test peers that cannot choose their listen address
 * (gnutls-serv binds the wildcard): a bind() to 0.0.0.0 or :: becomes a
 * bind() to 127.0.0.1 or ::1, so servers started by tests stay on loopback. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static void to_loopback(struct sockaddr_storage *a, socklen_t len) {
    if (a->ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in *in = (struct sockaddr_in *)a;
        if (in->sin_addr.s_addr == htonl(INADDR_ANY)) in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (a->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)a;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) in6->sin6_addr = in6addr_loopback;
    }
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind;
    struct sockaddr_storage copy;
    if (real_bind == NULL) {
        void *sym = dlsym(RTLD_NEXT, "bind");
        memcpy(&real_bind, &sym, sizeof real_bind);
    }
    if (addr == NULL || len > sizeof copy) return real_bind(fd, addr, len);
    memcpy(&copy, addr, len);
    to_loopback(&copy, len);
    return real_bind(fd, (const struct sockaddr *)&copy, len);
}
