/*
 * stdout and stderr for the statically linked libnl-3 and libnl-route-3,
 * prebuilt addon only (BERTH_PREBUILD=ON); the same fix as
 * libbpf_stderr.c. Debian's libnl-3.a and libnl-route-3.a read the C
 * library's `stdout`/`stderr` PC-relative (debug output, nl_dump defaults),
 * which a shared object cannot do: the build links copies of both archives
 * with the symbols renamed to these hidden variables (objcopy
 * --redefine-sym). The constructor runs at priority 101, before libnl's own
 * constructors (default priority), one of which stores stderr for its debug
 * output.
 */
#include <stdio.h>

__attribute__((visibility("hidden"))) FILE *berth_libnl_stdout;
__attribute__((visibility("hidden"))) FILE *berth_libnl_stderr;

__attribute__((constructor(101))) static void berth_libnl_stdio_init(void) {
  berth_libnl_stdout = stdout;
  berth_libnl_stderr = stderr;
}
