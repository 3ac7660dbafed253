/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The egress MTU of an IPv6 packet berth translates and sends itself (issue
 * 12): IPv6 routers never fragment, so a packet bigger than the out
 * interface's MTU (or a GSO packet whose segments are) is refused and its
 * sender gets an ICMPv6 Packet Too Big (type 2, the MTU), as ip6_forward
 * does. The hop limit is checked by the callers (lib/nat6_path.h).
 *
 * Two kinds of path, as lib/hop.h for IPv4:
 *   - source only (masquerade; a container's replies of published flows):
 *     in Docker the MTU check comes before POSTROUTING's SNAT, so the kernel
 *     answers the container itself. berth passes the packet to the kernel
 *     UNtranslated (BERTH_HOP_KERNEL), but only after asking the kernel's own
 *     route (bpf_fib_lookup AF_INET6 from the network's bridge) that it will
 *     refuse it: too big for the route, or not forwarded at all
 *     (unreachable, prohibited, forwarding off). A packet the kernel would
 *     forward or deliver locally is dropped TOO_BIG instead, so nothing
 *     leaves untranslated.
 *   - the destination translated (published from outside, replies arriving
 *     on an uplink, hairpin): passed, the packet would reach a host socket,
 *     so it is dropped TOO_BIG; arriving on an uplink, berth answers the
 *     sender itself with the Packet Too Big the kernel's forwarding path
 *     would send (berth_ptb6_reply): from the address the client sent to,
 *     quoting the packet as the client sent it (untranslated, as conntrack
 *     reverses the kernel's quote), 1280 bytes in all, out of the interface
 *     it arrived on, MACs swapped. Not rate limited, as the kernel's own
 *     are not: net.ipv6.icmp.ratemask leaves type 2 out (0-1,3-127 by
 *     default), so that path MTU discovery never starves; one answer per
 *     refused packet, never bigger than the packet refused.
 */
#ifndef BERTH_LIB_HOP6_H
#define BERTH_LIB_HOP6_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/maps.h"
#include "lib/hop.h" /* enum berth_hop */
#include "lib/ipv6.h"

#ifndef AF_INET6
#define AF_INET6 10
#endif

#define BERTH_IPV6_MIN_MTU 1280
/* The Packet Too Big berth builds: IPv6 header, ICMPv6 header, the quote. */
#define BERTH_PTB6_QUOTE (BERTH_IPV6_MIN_MTU - BERTH_IPV6_HLEN - BERTH_ICMP6_HLEN) /* 1232 */
#define BERTH_PTB6_L2 14

/*
 * Would the kernel refuse this untranslated packet of network network_id
 * (too big for its route, or no forwarding route at all) rather than
 * forward it or deliver it? Out of line: only packets that fail the check
 * come here.
 */
static __noinline int berth_hop6_kernel_refuses(struct __sk_buff *skb, const struct berth_l6 *p, __u32 network_id)
{
	struct berth_network_key nkey = { .network_id = network_id };
	struct bpf_fib_lookup fib = {};
	struct berth_net *net;
	__u32 mtu_len = 0;
	long rc;

	if (!p)
		return 0;
	net = bpf_map_lookup_elem(&berth_net, &nkey);
	if (!net || !net->bridge_ifindex)
		return 0; /* no bridge to ask the route from: not proven */
	fib.family = AF_INET6;
	fib.l4_protocol = p->l4.proto;
	fib.sport = p->l4.sport;
	fib.dport = p->l4.dport;
	fib.tot_len = skb->gso_size ? 0 : (__u16)(p->l4.l3_end - p->l4.l3_off);
	__builtin_memcpy(fib.ipv6_src, p->saddr, 16);
	__builtin_memcpy(fib.ipv6_dst, p->daddr, 16);
	fib.ifindex = net->bridge_ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return 1; /* ip6_forward: packet too big */
	if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return skb->gso_size && bpf_check_mtu(skb, fib.ifindex, &mtu_len, 0, BPF_MTU_CHK_SEGS) > 0;
	/* local: it would reach a host socket; else blackhole, unreachable,
	 * prohibited, forwarding off: the kernel drops it */
	return rc != BPF_FIB_LKUP_RET_NOT_FWDED && rc > 0;
}

/*
 * bpf_check_mtu of the IPv6 datagram itself: bytes a sender put past its
 * payload length are not measured (ip6_rcv_core trims them before the
 * kernel forwards, so they never make a packet too big). A GSO packet: its
 * segments (the helper takes no length change with BPF_MTU_CHK_SEGS).
 */
static __always_inline long berth_hop6_mtu(struct __sk_buff *skb, __u32 out_ifindex, __u32 *mtu_len)
{
	__be16 plen;
	__u32 dgram;
	__s32 diff = 0;

	if (skb->gso_size)
		return bpf_check_mtu(skb, out_ifindex, mtu_len, 0, BPF_MTU_CHK_SEGS);
	if (!bpf_skb_load_bytes(skb, BERTH_PTB6_L2 + 4, &plen, sizeof(plen))) {
		dgram = BERTH_PTB6_L2 + BERTH_IPV6_HLEN + bpf_ntohs(plen);
		if (bpf_ntohs(plen) && dgram < skb->len)
			diff = -(__s32)(skb->len - dgram);
	}
	return bpf_check_mtu(skb, out_ifindex, mtu_len, diff, 0);
}

/*
 * The verdict for an IPv6 packet about to leave by out_ifindex (see the
 * top). src_only: berth translates its source only, a packet a container of
 * network network_id sent. *mtu gets the out interface's MTU when it is too big.
 */
static __always_inline int berth_hop6_check(struct __sk_buff *skb, const struct berth_l6 *p, __u32 out_ifindex, int src_only,
					    __u32 network_id, __u32 *mtu, __u32 *reason)
{
	__u32 mtu_len = 0;
	long rc;

	rc = berth_hop6_mtu(skb, out_ifindex, &mtu_len);
	if (rc == BPF_MTU_CHK_RET_SUCCESS)
		return BERTH_HOP_SEND;
	if (rc < 0) {
		*reason = BERTH_DROP_NO_ENDPOINT; /* the out interface is gone */
		return BERTH_HOP_DROP;
	}
	*mtu = mtu_len;
	if (src_only && berth_hop6_kernel_refuses(skb, p, network_id))
		return BERTH_HOP_KERNEL;
	*reason = BERTH_DROP_TOO_BIG;
	return BERTH_HOP_DROP;
}

/* The pseudo-header of the ICMPv6 checksum (RFC 8200 8.1). */
struct berth_ptb6_pseudo {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
	__be32 nexthdr;
};

/*
 * Turn the refused packet (Ethernet, then IPv6: at least 1280 bytes of it,
 * since it did not fit an MTU of at least 1280) into the Packet Too Big for
 * its sender and send it back out of skb->ifindex. Returns the TC action:
 * bpf_redirect's, or TC_ACT_SHOT when it could not be built (the caller has
 * dropped and counted the packet either way).
 */
static __noinline int berth_ptb6_reply(struct __sk_buff *skb, __u32 mtu)
{
	struct berth_ptb6_pseudo ph = {};
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	struct ipv6hdr *ip6h;
	struct ethhdr *eth;
	void *data, *end;
	__u8 *icmp;
	__s64 sum;
	__u32 csum;

	if (mtu < BERTH_IPV6_MIN_MTU || skb->len < BERTH_PTB6_L2 + BERTH_IPV6_MIN_MTU)
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, 6, dmac, ETH_ALEN) || bpf_skb_load_bytes(skb, 0, smac, ETH_ALEN) ||
	    bpf_skb_load_bytes(skb, BERTH_PTB6_L2 + 8, ph.daddr, 16) || bpf_skb_load_bytes(skb, BERTH_PTB6_L2 + 24, ph.saddr, 16))
		return TC_ACT_SHOT;
	/* the quote: the first 1232 bytes of the packet as it arrived */
	if (bpf_skb_change_tail(skb, BERTH_PTB6_L2 + BERTH_PTB6_QUOTE, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_adjust_room(skb, BERTH_IPV6_HLEN + BERTH_ICMP6_HLEN, BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_pull_data(skb, BERTH_PTB6_L2 + BERTH_IPV6_MIN_MTU))
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (data + BERTH_PTB6_L2 + BERTH_IPV6_MIN_MTU > end)
		return TC_ACT_SHOT;
	eth = data;
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	ip6h = data + BERTH_PTB6_L2;
	*(__be32 *)ip6h = bpf_htonl(0x60000000);
	ip6h->payload_len = bpf_htons(BERTH_IPV6_MIN_MTU - BERTH_IPV6_HLEN);
	ip6h->nexthdr = BERTH_NH_ICMP;
	ip6h->hop_limit = 255;
	__builtin_memcpy(&ip6h->saddr, ph.saddr, 16);
	__builtin_memcpy(&ip6h->daddr, ph.daddr, 16);
	icmp = (__u8 *)(ip6h + 1);
	icmp[0] = BERTH_ICMP6_PKT_TOOBIG;
	icmp[1] = 0;
	icmp[2] = 0;
	icmp[3] = 0;
	*(__be32 *)(icmp + 4) = bpf_htonl(mtu);

	ph.len = bpf_htonl(BERTH_IPV6_MIN_MTU - BERTH_IPV6_HLEN);
	ph.nexthdr = bpf_htonl(BERTH_NH_ICMP);
	/* 1240 bytes of ICMPv6: 512 + 512 + 216 (bpf_csum_diff takes at most 512) */
	sum = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
	if (sum < 0)
		return TC_ACT_SHOT;
	sum = bpf_csum_diff(0, 0, (__be32 *)icmp, 512, (__u32)sum);
	if (sum < 0)
		return TC_ACT_SHOT;
	sum = bpf_csum_diff(0, 0, (__be32 *)(icmp + 512), 512, (__u32)sum);
	if (sum < 0)
		return TC_ACT_SHOT;
	sum = bpf_csum_diff(0, 0, (__be32 *)(icmp + 1024), BERTH_IPV6_MIN_MTU - BERTH_IPV6_HLEN - 1024, (__u32)sum);
	if (sum < 0)
		return TC_ACT_SHOT;
	csum = (__u32)sum;
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	*(__u16 *)(icmp + 2) = (__u16)~csum;
	return (int)bpf_redirect(skb->ifindex, 0);
}

#endif
