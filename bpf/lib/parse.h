/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing with one cursor contract:
 *   - `struct berth_cursor` holds the current position and the packet's end;
 *   - a parse_* function either returns a pointer to a header that lies wholly
 *     inside [pos, end) and advances pos past it, or returns NULL and leaves
 *     pos unchanged;
 *   - nothing here writes to the packet.
 */
#ifndef BERTH_LIB_PARSE_H
#define BERTH_LIB_PARSE_H

#include "kernel.h"

struct berth_cursor {
	void *pos;
	void *end;        /* end of the linear data: bounds every direct read */
	void *start;      /* the packet's first byte */
	__u32 len;        /* the packet's length, paged data included */
	__u32 gso;        /* a GSO packet: its IPv4 tot_len may be 0 (BIG TCP) */
	__u32 dgram_end;  /* set by berth_parse_ipv4: offset of the IPv4 datagram's end */
};

static __always_inline void berth_cursor_init_skb(struct berth_cursor *c, struct __sk_buff *skb)
{
	c->pos = (void *)(long)skb->data;
	c->end = (void *)(long)skb->data_end;
	c->start = c->pos;
	c->len = skb->len;
	c->gso = skb->gso_size;
	c->dgram_end = 0;
}

/* XDP: the linear part only, so a multi-buffer frame's datagram looks truncated (which there only means XDP_PASS). */
static __always_inline void berth_cursor_init_xdp(struct berth_cursor *c, struct xdp_md *ctx)
{
	c->pos = (void *)(long)ctx->data;
	c->end = (void *)(long)ctx->data_end;
	c->start = c->pos;
	c->len = (__u32)(ctx->data_end - ctx->data);
	c->gso = 0;
	c->dgram_end = 0;
}

static __always_inline struct ethhdr *berth_parse_eth(struct berth_cursor *c)
{
	struct ethhdr *eth = c->pos;

	if ((void *)(eth + 1) > c->end)
		return NULL;
	c->pos = eth + 1;
	return eth;
}

/* Adds the header's 32-bit word k when the header is that long; not right (0) when it lies past the linear data. */
#define BERTH_IPV4_WORD(k)                                                  \
	do {                                                                \
		if (hlen > 4 * (k)) {                                       \
			if ((void *)iph + 4 * ((k) + 1) > end)              \
				return 0;                                   \
			sum += w[k];                                        \
		}                                                           \
	} while (0)

/*
 * The IPv4 header's checksum is right: the one's complement sum of its words
 * is -0. The caller checked that the first 20 bytes are in the packet; the
 * options are summed word by word at constant offsets, each bounded.
 */
static __always_inline int berth_ipv4_csum_ok(const struct iphdr *iph, __u32 hlen, void *end)
{
	const __u32 *w = (const __u32 *)iph;
	__u64 sum = (__u64)w[0] + w[1] + w[2] + w[3] + w[4];

	BERTH_IPV4_WORD(5);
	BERTH_IPV4_WORD(6);
	BERTH_IPV4_WORD(7);
	BERTH_IPV4_WORD(8);
	BERTH_IPV4_WORD(9);
	BERTH_IPV4_WORD(10);
	BERTH_IPV4_WORD(11);
	BERTH_IPV4_WORD(12);
	BERTH_IPV4_WORD(13);
	BERTH_IPV4_WORD(14);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

#undef BERTH_IPV4_WORD

/*
 * An IPv4 header (options included) that the kernel's own receive path
 * would accept (ip_rcv_core): version 4, IHL >= 5 with the options in the
 * packet, a right header checksum, and a datagram no shorter than its header
 * that ends within the packet (tot_len 0 only on a GSO packet: BIG TCP, the
 * rest of the packet). NULL otherwise, for the kernel to drop as it would
 * without berth: nothing is ever rewritten that the receiver would refuse.
 * On success c->dgram_end is the datagram's end (trailing padding excluded).
 */
static __always_inline struct iphdr *berth_parse_ipv4(struct berth_cursor *c)
{
	struct iphdr *iph = c->pos;
	__u32 hlen, off, tot;

	if ((void *)(iph + 1) > c->end)
		return NULL;
	hlen = (__u32)iph->ihl * 4;
	if (iph->version != 4 || hlen < sizeof(*iph) || c->pos + hlen > c->end)
		return NULL;
	off = (__u32)(c->pos - c->start);
	tot = bpf_ntohs(iph->tot_len);
	if (tot == 0 && c->gso)
		tot = c->len - off;
	if (tot < hlen || off + tot > c->len)
		return NULL;
	if (!berth_ipv4_csum_ok(iph, hlen, c->end))
		return NULL;
	c->dgram_end = off + tot;
	c->pos += hlen;
	return iph;
}

/* Unicast: the group bit of the first octet is clear. */
static __always_inline int berth_eth_is_unicast(const struct ethhdr *eth)
{
	return !(eth->h_dest[0] & 1);
}

#endif
