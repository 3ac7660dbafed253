/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Addresses of the flow maps' keys (berth_contract.h): 16 bytes, IPv6 as is,
 * IPv4 as ::ffff:a.b.c.d, so that one conntrack, fragment and publish map
 * holds both families. The IPv4 paths keep their __be32 (struct berth_l4) and
 * go through these helpers where they meet a key.
 */
#ifndef BERTH_LIB_ADDR_H
#define BERTH_LIB_ADDR_H

#include "kernel.h"

/* bpf_htonl(0x0000ffff), the third word of a v4-mapped address */
#define BERTH_V4MAPPED_WORD bpf_htonl(0x0000ffff)

static __always_inline void berth_addr_set4(__be32 *a, __be32 v4)
{
	a[0] = 0;
	a[1] = 0;
	a[2] = BERTH_V4MAPPED_WORD;
	a[3] = v4;
}

/* The IPv4 address of a v4-mapped key address. */
static __always_inline __be32 berth_addr4(const __be32 *a)
{
	return a[3];
}

static __always_inline void berth_addr_copy(__be32 *to, const __be32 *from)
{
	to[0] = from[0];
	to[1] = from[1];
	to[2] = from[2];
	to[3] = from[3];
}

static __always_inline int berth_addr_eq(const __be32 *a, const __be32 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

static __always_inline int berth_addr_is_zero(const __be32 *a)
{
	return (a[0] | a[1] | a[2] | a[3]) == 0;
}

/* (a & mask) == net, all 16 bytes */
static __always_inline int berth_addr_in(const __be32 *a, const __be32 *net, const __be32 *mask)
{
	return (((a[0] & mask[0]) ^ net[0]) | ((a[1] & mask[1]) ^ net[1]) | ((a[2] & mask[2]) ^ net[2]) |
		((a[3] & mask[3]) ^ net[3])) == 0;
}

#endif
