/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The next hop of a packet berth is about to translate and send itself:
 * its TTL and the out interface's MTU, checked as the kernel's ip_forward
 * checks them (TTL <= 1: time exceeded; bigger than the MTU with DF set, or
 * a GSO packet whose segments are: fragmentation needed).
 *
 * Two kinds of path:
 *   - source only (masquerade; a container's replies of published flows):
 *     in Docker those checks come before POSTROUTING's SNAT, so the kernel
 *     answers the container itself. berth passes such a packet to the kernel
 *     UNtranslated, but only after asking the kernel's own route for it
 *     (bpf_fib_lookup from the network's bridge) that the kernel will refuse
 *     it: forwarded, with TTL <= 1, or DF set and too big for the device the
 *     route leaves by; or not forwarded at all (unreachable, prohibited,
 *     forwarding off). A packet the kernel would forward (its route has room)
 *     or deliver locally is dropped instead, so nothing ever leaves
 *     untranslated. Too big with DF clear: the kernel would SNAT and then
 *     fragment; berth cannot fragment: dropped (TOO_BIG).
 *   - the destination translated (published from outside, hairpin, replies
 *     arriving on an uplink): passing would deliver the packet to a host
 *     socket, so TTL <= 1 is dropped (TTL_EXCEEDED), and too big for the
 *     container's veth is dropped (TOO_BIG).
 * "Too big" measures the IPv4 datagram (tot_len), as lib/hop6.h measures
 * IPv6's: bytes a sender put past tot_len (Ethernet padding, or more) are
 * trimmed by ip_rcv_core before the kernel forwards, so they never make a
 * packet too big, neither here nor in the question whether the kernel would
 * refuse it (which, asked of the frame, would pass a packet that fits
 * untranslated, for the kernel to forward as it is).
 */
#ifndef BERTH_LIB_HOP_H
#define BERTH_LIB_HOP_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif

#define BERTH_IP_DF 0x4000
#define BERTH_HOP_L2 14 /* the Ethernet header before the IPv4 one (every caller's frame) */

enum berth_hop {
	BERTH_HOP_SEND = 0,   /* translate and send it */
	BERTH_HOP_KERNEL = 1, /* pass it untranslated: the kernel refuses it and answers */
	BERTH_HOP_DROP = 2,   /* drop it, *reason says why */
};

/*
 * bpf_check_mtu of the IPv4 datagram itself, not of bytes past its tot_len
 * (see the top). A GSO packet: its segments (the helper takes no length
 * change with BPF_MTU_CHK_SEGS). A tot_len the frame does not hold (the
 * kernel drops such a packet) changes nothing: the frame is measured.
 */
static __always_inline long berth_hop_mtu(struct __sk_buff *skb, __u32 out_ifindex, __u32 *mtu_len)
{
	__be16 tot_len;
	__u32 dgram;
	__s32 diff = 0;

	if (skb->gso_size)
		return bpf_check_mtu(skb, out_ifindex, mtu_len, 0, BPF_MTU_CHK_SEGS);
	if (!bpf_skb_load_bytes(skb, BERTH_HOP_L2 + 2, &tot_len, sizeof(tot_len))) {
		dgram = BERTH_HOP_L2 + bpf_ntohs(tot_len);
		if (bpf_ntohs(tot_len) && dgram < skb->len)
			diff = -(__s32)(skb->len - dgram);
	}
	return bpf_check_mtu(skb, out_ifindex, mtu_len, diff, 0);
}

/*
 * Would the kernel refuse this untranslated packet (saddr -> daddr, arriving
 * on the bridge of network network_id) rather than forward it or deliver it? ttl_out:
 * its TTL is <= 1; otherwise it has DF set and is too big for out_ifindex.
 * Out of line: only packets that fail a check come here.
 */
static __noinline int berth_hop_kernel_refuses(struct __sk_buff *skb, __be32 saddr, __be32 daddr, __u32 network_id, int ttl_out)
{
	struct berth_network_key nkey = { .network_id = network_id };
	struct bpf_fib_lookup fib = {};
	struct berth_net *net;
	__u32 mtu_len = 0;
	long rc;

	net = bpf_map_lookup_elem(&berth_net, &nkey);
	if (!net || !net->bridge_ifindex)
		return 0; /* no bridge to ask the route from: not proven */
	fib.family = AF_INET;
	fib.ipv4_src = saddr;
	fib.ipv4_dst = daddr;
	fib.ifindex = net->bridge_ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		if (ttl_out)
			return 1; /* ip_forward: time exceeded */
		return berth_hop_mtu(skb, fib.ifindex, &mtu_len) > 0;
	}
	/* local: it would reach a host socket; else blackhole, unreachable,
	 * prohibited, forwarding off: the kernel drops it */
	return rc != BPF_FIB_LKUP_RET_NOT_FWDED && rc > 0;
}

/*
 * The verdict for a packet (TTL ttl, IP flags+offset frag_off in host order)
 * about to leave by out_ifindex. src_only: berth translates its source only,
 * a packet a container of network network_id sent (see top).
 */
static __always_inline int berth_hop_check(struct __sk_buff *skb, __u8 ttl, __u16 frag_off, __u32 out_ifindex, int src_only,
					   __be32 saddr, __be32 daddr, __u32 network_id, __u32 *reason)
{
	__u32 mtu_len = 0;
	long rc;

	if (ttl <= 1) {
		if (src_only && berth_hop_kernel_refuses(skb, saddr, daddr, network_id, 1))
			return BERTH_HOP_KERNEL;
		*reason = BERTH_DROP_TTL_EXCEEDED;
		return BERTH_HOP_DROP;
	}
	rc = berth_hop_mtu(skb, out_ifindex, &mtu_len);
	if (rc == BPF_MTU_CHK_RET_SUCCESS)
		return BERTH_HOP_SEND;
	if (rc < 0) {
		*reason = BERTH_DROP_NO_ENDPOINT; /* the out interface is gone */
		return BERTH_HOP_DROP;
	}
	if (src_only && (frag_off & BERTH_IP_DF) && berth_hop_kernel_refuses(skb, saddr, daddr, network_id, 0))
		return BERTH_HOP_KERNEL;
	*reason = BERTH_DROP_TOO_BIG;
	return BERTH_HOP_DROP;
}

#endif
