/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Container-to-container forwarding decision for a packet that a container
 * sent (host veth ingress). Pure decision: it reads the packet and the endpoint
 * maps and says pass / redirect / drop(reason); the entry program acts on it.
 */
#ifndef BERTH_LIB_FORWARD_H
#define BERTH_LIB_FORWARD_H

#include "lib/maps.h"
#include "lib/parse.h"

struct berth_fwd {
	__u32 verdict;                /* enum berth_verdict */
	__u32 reason;                 /* enum berth_drop_reason when verdict is DROP */
	struct berth_endpoint *dst;   /* set when verdict is REDIRECT */
	struct ethhdr *eth;           /* set when verdict is REDIRECT */
};

/*
 * Between two known endpoints: src sent (host veth ifindex), dst owns the
 * destination address. Same network and icc: redirect; otherwise drop.
 */
static __always_inline void berth_forward_between(const struct berth_endpoint *src, struct berth_endpoint *dst,
						  struct ethhdr *eth, struct berth_fwd *out)
{
	out->dst = NULL;
	out->eth = NULL;
	if (dst->network_id != src->network_id) {
		out->verdict = BERTH_VERDICT_DROP;
		out->reason = BERTH_DROP_ISOLATION;
		return;
	}
	if (!(src->flags & BERTH_EP_ICC)) {
		out->verdict = BERTH_VERDICT_DROP;
		out->reason = BERTH_DROP_ICC;
		return;
	}
	out->verdict = BERTH_VERDICT_REDIRECT;
	out->reason = BERTH_DROP_NONE;
	out->dst = dst;
	out->eth = eth;
}

/* The whole decision from the packet (parses Ethernet and IPv4 itself). */
static __always_inline void berth_forward_decide(struct berth_cursor *c, __u32 ifindex, struct berth_fwd *out)
{
	struct berth_ifindex_key skey = { .ifindex = ifindex };
	struct berth_endpoint *src, *dst;
	struct berth_ip_key dkey;
	struct ethhdr *eth;
	struct iphdr *iph;

	out->verdict = BERTH_VERDICT_PASS;
	out->reason = BERTH_DROP_NONE;
	out->dst = NULL;
	out->eth = NULL;

	eth = berth_parse_eth(c);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP) || !berth_eth_is_unicast(eth))
		return; /* ARP, IPv6, broadcast, multicast: the kernel's business */
	/* A malformed IPv4 header is passed: the bridge and the receiving kernel
	 * treat it exactly as they would without berth. */
	iph = berth_parse_ipv4(c);
	if (!iph)
		return;

	src = bpf_map_lookup_elem(&berth_ep_by_ifindex, &skey);
	if (!src)
		return;
	dkey.addr = iph->daddr;
	dst = bpf_map_lookup_elem(&berth_ep_by_ip, &dkey);
	if (!dst || dst->ifindex == ifindex)
		return; /* not a local container: routed by the kernel */
	berth_forward_between(src, dst, eth, out);
}

#endif
