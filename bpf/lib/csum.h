/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Field rewrites with their checksum fixups, through the kernel helpers so
 * that every skb checksum mode stays right (CHECKSUM_PARTIAL from a
 * container's veth: only the pseudo-header part of the L4 field is touched;
 * CHECKSUM_COMPLETE from a NIC: skb->csum follows).
 *
 * All offsets are from the start of the packet (skb->data). Every function
 * here invalidates packet pointers: the caller re-derives them afterwards.
 * Return 0 or a negative errno from the helpers.
 */
#ifndef BERTH_LIB_CSUM_H
#define BERTH_LIB_CSUM_H

#include "kernel.h"

/* Flags for bpf_l4_csum_replace on a transport checksum. UDP's 0 means "no
 * checksum" and stays 0; a result of 0 is written as 0xffff. */
static __always_inline __u64 berth_l4_csum_flags(__u8 proto)
{
	return proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/*
 * Rewrite an IPv4 address at addr_off: the IP header checksum at l3_csum_off
 * and (when l4_csum_off != 0) the transport checksum, which covers the
 * address through the pseudo header (TCP, UDP; never ICMP).
 */
static __always_inline int berth_set_addr(struct __sk_buff *skb, __u32 addr_off, __u32 l3_csum_off,
					  __u32 l4_csum_off, __u8 proto, __be32 from, __be32 to)
{
	int ret;

	if (from == to)
		return 0;
	if (l4_csum_off) {
		ret = bpf_l4_csum_replace(skb, l4_csum_off, from, to,
					  BPF_F_PSEUDO_HDR | sizeof(to) | berth_l4_csum_flags(proto));
		if (ret < 0)
			return ret;
	}
	ret = bpf_l3_csum_replace(skb, l3_csum_off, from, to, sizeof(to));
	if (ret < 0)
		return ret;
	return bpf_skb_store_bytes(skb, addr_off, &to, sizeof(to), 0);
}

/*
 * Rewrite a 16-bit field covered by a checksum at csum_off (0: none): a
 * TCP/UDP port, an ICMP echo identifier, a field of an ICMP error's quoted
 * header. pseudo=0: the field is in the checksummed data itself.
 */
static __always_inline int berth_set_be16(struct __sk_buff *skb, __u32 off, __u32 csum_off, __u64 csum_flags,
					  __be16 from, __be16 to)
{
	int ret;

	if (from == to)
		return 0;
	if (csum_off) {
		ret = bpf_l4_csum_replace(skb, csum_off, from, to, sizeof(to) | csum_flags);
		if (ret < 0)
			return ret;
	}
	return bpf_skb_store_bytes(skb, off, &to, sizeof(to), 0);
}

/* Rewrite a 32-bit field covered by one plain (non pseudo-header) checksum. */
static __always_inline int berth_set_be32_plain(struct __sk_buff *skb, __u32 off, __u32 csum_off, __be32 from, __be32 to)
{
	int ret;

	if (from == to)
		return 0;
	if (csum_off) {
		ret = bpf_l4_csum_replace(skb, csum_off, from, to, sizeof(to));
		if (ret < 0)
			return ret;
	}
	return bpf_skb_store_bytes(skb, off, &to, sizeof(to), 0);
}

/* Decrement the TTL of a routed packet (when above 1), fixing the header
 * checksum. The TTL shares a 16-bit checksum word with the protocol. */
static __always_inline int berth_dec_ttl(struct __sk_buff *skb, __u32 l3_off)
{
	__u8 word[2];
	__be16 from, to;
	int ret;

	if (bpf_skb_load_bytes(skb, l3_off + 8, word, sizeof(word)) < 0)
		return -1;
	if (word[0] <= 1)
		return 0;
	__builtin_memcpy(&from, word, 2);
	word[0] -= 1;
	__builtin_memcpy(&to, word, 2);
	ret = bpf_l3_csum_replace(skb, l3_off + 10, from, to, sizeof(to));
	if (ret < 0)
		return ret;
	return bpf_skb_store_bytes(skb, l3_off + 8, word, 1, 0);
}

#endif
