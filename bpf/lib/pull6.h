/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * An IPv6 packet arriving on a served interface whose headers lie past the
 * skb's linear data (issue 12): a driver or a sender (an AF_PACKET socket
 * writing a frame of a page or more keeps only its Ethernet header linear)
 * may leave the fixed header and the extension headers in the paged
 * fragments, where direct packet access cannot read them. Parsed unpulled,
 * such a packet would pass to the host untranslated: a published port's
 * client would reach the host's own socket on that port, not the
 * container. So it is pulled (bpf_skb_pull_data) far enough to hold the
 * longest chain the walk of lib/ipv6.h accepts (BERTH_IPV6_MAX_EXT headers
 * of at most 2048 bytes each, then the largest transport header), bounded
 * by the packet's length, and parsed again; a pull that fails leaves
 * BERTH_V6_NONLINEAR, for the caller to drop (counted MALFORMED).
 */
#ifndef BERTH_LIB_PULL6_H
#define BERTH_LIB_PULL6_H

#include "kernel.h"
#include "lib/ipv6.h"
#include "lib/nat6.h" /* berth_nat6_parse */

/* Ethernet, the fixed header, 8 extension headers of (255 + 1) * 8 bytes, TCP with options */
#define BERTH_V6_PULL_MAX (14 + BERTH_IPV6_HLEN + BERTH_IPV6_MAX_EXT * 2048 + 60)

/* berth_nat6_parse, pulling once when a header lies past the linear data.
 * Packet pointers are invalid after the call: the caller re-reads skb->data. */
static __always_inline int berth_l6_load_deep(struct __sk_buff *skb, struct berth_l6 *p)
{
	int st = berth_nat6_parse(skb, p);

	if (st != BERTH_V6_NONLINEAR)
		return st;
	if (bpf_skb_pull_data(skb, skb->len > BERTH_V6_PULL_MAX ? BERTH_V6_PULL_MAX : skb->len))
		return BERTH_V6_NONLINEAR;
	return berth_nat6_parse(skb, p);
}

#endif
