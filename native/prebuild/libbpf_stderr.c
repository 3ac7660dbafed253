/*
 * stderr for the statically linked libbpf, prebuilt addon only
 * (BERTH_PREBUILD=ON).
 *
 * Debian's libbpf.a is position-independent *executable* code: it reads the
 * C library's `stderr` variable PC-relative (libbpf's default print
 * function), which only works when the variable ends up inside the same
 * executable, and a shared object cannot have that relocation. The build
 * therefore links a copy of libbpf.a in which `stderr` is renamed to
 * `berth_libbpf_stderr` (objcopy --redefine-sym), defined here as a local
 * variable that holds the C library's stderr. The addon installs its own
 * print function anyway; this only keeps libbpf's default one working.
 */
#include <stdio.h>

__attribute__((visibility("hidden"))) FILE *berth_libbpf_stderr;

__attribute__((constructor)) static void berth_libbpf_stderr_init(void) {
  berth_libbpf_stderr = stderr;
}
