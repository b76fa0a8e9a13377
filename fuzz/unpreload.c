/* Preloaded after libasan by `make asan`: takes LD_PRELOAD out of the
 * environment once the sanitizer runtime is in, so that the processes the
 * specs spawn (openssl s_server, curl, the shell) do not load it too. The
 * busted process is the one under test; a leak report from curl is noise. */
#define _POSIX_C_SOURCE 200112L
#include <stdlib.h>

__attribute__((constructor)) static void unpreload(void) {
    unsetenv("LD_PRELOAD");
}
