// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Entry points on a bridge berth manages (tcx): the network's choke point,
 * attached when the network is known, before any of its containers, and
 * pinned, so it holds while the daemon is down and for containers berth has
 * not programmed yet. Decisions live in lib/guard.h.
 *   berth_br_out (egress):  what the host sends into the network. Routed
 *                           traffic into a network leaves through its bridge.
 *                           A routed network (gateway_mode_ipv4=routed) also
 *                           lets in ICMP, its published container ports and
 *                           the replies of its containers' flows (lib/routed.h),
 *                           each packet after the user's policy (DOCKER-USER
 *                           first, on the packet's own header: the container
 *                           port; lib/routed_policy.h; deny: drop POLICY).
 *   berth_br_in (ingress):  what the network sends up to the host.
 * IPv6 (br_out6, br_in6; lib/guard6.h): link-local, NDP and MLD pass; routed
 * IPv6 enters only from the host or the network itself and only a network
 * with IPv6 (NO_IPV6), except, into a routed-v6 network
 * (gateway_mode_ipv6=routed), ICMPv6, its published container ports and the
 * replies of its containers' flows (lib/routed6.h), after the user's policy
 * as for IPv4 (lib/routed_policy.h); what goes up must come
 * from a programmed endpoint.
 * Counted on the bridge's ifindex: to_container for egress, from_container
 * for ingress.
 */
#include "kernel.h"
#include "berth_contract.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/counters.h"
#include "lib/events.h"
#include "lib/l4.h"
#include "lib/guard.h"
#include "lib/routed.h"
#include "lib/guard6.h"
#include "lib/routed6.h"

/* berth_fast_path = 0: count only, pass everything. */
const volatile __u8 berth_fast_path = 1;

const volatile struct berth_btf_anchor berth_btf_anchor;

static __always_inline int br_pass(__u32 ifindex, __u32 dir, __u32 len)
{
	berth_count(ifindex, dir, BERTH_VERDICT_PASS, 0, len);
	return TC_ACT_UNSPEC;
}

static __always_inline int br_drop(struct __sk_buff *skb, __u32 ifindex, __u32 dir, __u32 reason, __u32 len)
{
	berth_count(ifindex, dir, BERTH_VERDICT_DROP, reason, len);
	berth_emit_drop_skb(skb, ifindex, dir, reason, len);
	return TC_ACT_SHOT;
}

/*
 * IPv6 the host sends into the network: link-scope destinations (NDP,
 * router and multicast-listener traffic) pass; a routable one only from the
 * host itself or from the network's own traffic (berth_bridge_entry: from
 * another of berth's bridges ISOLATION, from anywhere else NOT_PUBLISHED,
 * direct access to a container's address; a routed-v6 network's ways in
 * aside, lib/routed6.h), and only into a network with IPv6 (NO_IPV6).
 * [v6nat]: the published-port DNAT and a NAT66 flow's replies are
 * redirected at the uplink, before this point.
 */
static __noinline int br_out6(struct __sk_buff *skb)
{
	struct berth_ifindex_key bkey = { .ifindex = skb->ifindex };
	__u32 dir = BERTH_DIR_TO_CONTAINER;
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	struct berth_bridge *br;
	struct ipv6hdr *ip6;
	struct berth_cursor c;
	__u32 reason;

	berth_cursor_init_skb(&c, skb);
	if (!berth_parse_eth(&c))
		return br_pass(ifindex, dir, len);
	ip6 = c.pos;
	if ((void *)(ip6 + 1) > c.end)
		return br_pass(ifindex, dir, len); /* not routable: nothing to forward */
	if (berth_ipv6_link_scope(ip6))
		return br_pass(ifindex, dir, len); /* NDP, router and multicast-listener traffic */
	reason = berth_bridge_entry(ifindex, skb->ingress_ifindex);
	if (reason == BERTH_DROP_NOT_PUBLISHED)
		reason = berth_routed6_entry(skb, ifindex); /* a routed-v6 network's ways in */
	if (!reason) {
		br = bpf_map_lookup_elem(&berth_bridge, &bkey);
		if (!br || !(br->flags & BERTH_EP_IPV6))
			reason = BERTH_DROP_NO_IPV6;
	}
	if (reason)
		return br_drop(skb, ifindex, dir, reason, len);
	return br_pass(ifindex, dir, len);
}

/*
 * IPv6 the network sends up to the host (lib/guard6.h berth_bridge_exit6):
 * link traffic passes; a routable source must be one of the network's
 * programmed endpoints (UNKNOWN_SOURCE, SPOOFED, NO_IPV6 otherwise).
 * Malformed: passed, the kernel drops it; what berth will not parse is
 * dropped MALFORMED.
 */
static __noinline int br_in6(struct __sk_buff *skb)
{
	struct berth_ifindex_key bkey = { .ifindex = skb->ifindex };
	__u32 dir = BERTH_DIR_FROM_CONTAINER;
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	struct berth_network_key nkey;
	struct berth_bridge *br;
	struct berth_net *net;
	struct berth_l6 p;
	__u32 reason;
	int st;

	st = berth_l6_load(skb, &p);
	if (st == BERTH_V6_MALFORMED)
		return br_pass(ifindex, dir, len);
	if (st != BERTH_V6_OK)
		return br_drop(skb, ifindex, dir, BERTH_DROP_MALFORMED, len);
	br = bpf_map_lookup_elem(&berth_bridge, &bkey);
	if (!br)
		return br_drop(skb, ifindex, dir, BERTH_DROP_UNKNOWN_SOURCE, len);
	nkey.network_id = br->network_id;
	net = bpf_map_lookup_elem(&berth_net, &nkey);
	reason = berth_bridge_exit6(br, net, &p);
	if (reason)
		return br_drop(skb, ifindex, dir, reason, len);
	return br_pass(ifindex, dir, len);
}

SEC("tc")
int berth_br_out(struct __sk_buff *skb)
{
	__u32 dir = BERTH_DIR_TO_CONTAINER;
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	struct berth_cursor c;
	struct ethhdr *eth;
	__u32 reason;

	if (!berth_fast_path)
		return br_pass(ifindex, dir, len);
	berth_cursor_init_skb(&c, skb);
	eth = berth_parse_eth(&c);
	if (!eth)
		return br_pass(ifindex, dir, len);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return br_out6(skb);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return br_pass(ifindex, dir, len); /* ARP and the rest of L2 */
	/* An IPv4 packet: only from the host itself or from the network's own
	 * traffic. */
	reason = berth_bridge_entry(ifindex, skb->ingress_ifindex);
	if (reason == BERTH_DROP_NOT_PUBLISHED)
		reason = berth_routed_entry(skb, &c, ifindex); /* a routed network's ways in */
	if (reason)
		return br_drop(skb, ifindex, dir, reason, len);
	return br_pass(ifindex, dir, len);
}

SEC("tc")
int berth_br_in(struct __sk_buff *skb)
{
	struct berth_ifindex_key bkey = { .ifindex = skb->ifindex };
	__u32 dir = BERTH_DIR_FROM_CONTAINER;
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	struct berth_network_key nkey;
	struct berth_bridge *br;
	struct berth_net *net;
	struct berth_cursor c;
	struct berth_l4 p;
	struct ethhdr *eth;
	struct iphdr *iph;
	__u32 reason;

	if (!berth_fast_path)
		return br_pass(ifindex, dir, len);
	berth_cursor_init_skb(&c, skb);
	eth = berth_parse_eth(&c);
	if (eth && eth->h_proto == bpf_htons(ETH_P_IPV6))
		return br_in6(skb);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return br_pass(ifindex, dir, len); /* ARP */
	iph = berth_parse_ipv4(&c);
	if (!iph)
		return br_pass(ifindex, dir, len); /* the kernel drops a malformed header itself */
	br = bpf_map_lookup_elem(&berth_bridge, &bkey);
	if (!br)
		return br_drop(skb, ifindex, dir, BERTH_DROP_UNKNOWN_SOURCE, len);
	berth_parse_l4(&c, (void *)(long)skb->data, iph, &p);
	nkey.network_id = br->network_id;
	net = bpf_map_lookup_elem(&berth_net, &nkey);
	reason = berth_bridge_exit(br, net, &p);
	if (reason)
		return br_drop(skb, ifindex, dir, reason, len);
	return br_pass(ifindex, dir, len);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
