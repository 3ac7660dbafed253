/*
 * libelf's error state, for the prebuilt addon only (BERTH_PREBUILD=ON).
 *
 * Debian's libelf.a is compiled as position-independent *executable* code:
 * everything in it links into a shared object, except its one thread-local,
 * the last error code in elf_error.o, which uses the local-exec TLS model
 * (R_X86_64_TPOFF32). A dlopen()ed .node cannot have that, so this file
 * provides the three functions of that member with the same contract
 * (libelf.h): the addon's objects define them before libelf.a is searched,
 * and the linker then never pulls elf_error.o in. Built -fPIC, the
 * thread-local below gets a TLS model that shared objects may use.
 *
 * The messages are libelf's own, read through elf_errmsg() at build time
 * (libelf_messages.c); translations (dcgettext) are not carried over.
 */
#include "libelf_messages.h"

static __thread int berth_elf_last_error;

/* libelf's internal setter, called by every other member of libelf.a */
void __libelf_seterrno(int value) {
  berth_elf_last_error = value;
}

/* the pending error code, which is then cleared */
int elf_errno(void) {
  int e = berth_elf_last_error;
  berth_elf_last_error = 0;
  return e;
}

/* 0: the pending error's message, or NULL when none; -1: the same, but "no error" instead of NULL */
const char *elf_errmsg(int error) {
  int e = error;
  if (error == 0 || error == -1) {
    e = berth_elf_last_error;
    if (e == 0) return error == 0 ? (const char *)0 : berth_libelf_msgs[0];
  }
  if (e < 0 || e >= (int)(sizeof berth_libelf_msgs / sizeof berth_libelf_msgs[0])) return berth_libelf_unknown;
  return berth_libelf_msgs[e];
}
