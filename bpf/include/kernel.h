/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one kernel header of berth's BPF programs: every BPF source includes
 * this and no libc or uapi header, so building needs clang and libbpf's BPF
 * headers only (no glibc headers, no multiarch include folder).
 *
 * - Types come from vmlinux.h, generated from a kernel's BTF by
 *   scripts/gen-vmlinux.sh and kept in the tree (building needs no BTF).
 *   BPF_NO_PRESERVE_ACCESS_INDEX: berth reads packets and uapi contexts
 *   whose layouts are fixed ABI, so no CO-RE relocations are emitted.
 * - BTF carries enums but not #defines: the uapi constants berth uses are
 *   defined below, with the header each comes from.
 * - Helper declarations and endianness macros come from libbpf.
 */
#ifndef BERTH_KERNEL_H
#define BERTH_KERNEL_H

#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* linux/if_ether.h */
#define ETH_ALEN 6
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* linux/pkt_cls.h */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2

/* asm-generic/errno-base.h */
#define ENOMEM 12
#define EEXIST 17
#define E2BIG 7

#endif /* BERTH_KERNEL_H */
