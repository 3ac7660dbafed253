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
	void *end;
};

static __always_inline void berth_cursor_init_skb(struct berth_cursor *c, struct __sk_buff *skb)
{
	c->pos = (void *)(long)skb->data;
	c->end = (void *)(long)skb->data_end;
}

static __always_inline struct ethhdr *berth_parse_eth(struct berth_cursor *c)
{
	struct ethhdr *eth = c->pos;

	if ((void *)(eth + 1) > c->end)
		return NULL;
	c->pos = eth + 1;
	return eth;
}

/* IPv4 header including options; NULL if truncated or IHL < 5. */
static __always_inline struct iphdr *berth_parse_ipv4(struct berth_cursor *c)
{
	struct iphdr *iph = c->pos;
	__u32 hlen;

	if ((void *)(iph + 1) > c->end)
		return NULL;
	hlen = (__u32)iph->ihl * 4;
	if (hlen < sizeof(*iph) || c->pos + hlen > c->end)
		return NULL;
	c->pos += hlen;
	return iph;
}

/* Unicast: the group bit of the first octet is clear. */
static __always_inline int berth_eth_is_unicast(const struct ethhdr *eth)
{
	return !(eth->h_dest[0] & 1);
}

#endif
