// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Entry points on a container's host-side veth (tcx, or clsact as fallback).
 *   berth_veth_ingress: what the container sends.
 *   berth_veth_egress:  what the kernel (bridge, routing) delivers to it.
 * Logic lives in lib/; this file only wires decisions to actions and counters.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "berth_contract.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/counters.h"
#include "lib/forward.h"

/* Load-time settings. berth_fast_path = 0 keeps counting but never redirects
 * or drops: the kernel path with berth's counters (used to compare paths). */
const volatile __u8 berth_fast_path = 1;

/* Keeps every contract enum in the object's BTF (see berth_contract.h). */
const volatile struct berth_btf_anchor berth_btf_anchor;

SEC("tc")
int berth_veth_ingress(struct __sk_buff *skb)
{
	struct berth_cursor c;
	struct berth_fwd fwd;
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;

	berth_cursor_init_skb(&c, skb);
	berth_forward_decide(&c, ifindex, &fwd);

	if (!berth_fast_path || fwd.verdict == BERTH_VERDICT_PASS) {
		berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_PASS, 0, len);
		return TC_ACT_UNSPEC;
	}
	if (fwd.verdict == BERTH_VERDICT_DROP) {
		berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_DROP, fwd.reason, len);
		return TC_ACT_SHOT;
	}
	if (!fwd.dst || !fwd.eth) {
		berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_DROP, BERTH_DROP_NO_ENDPOINT, len);
		return TC_ACT_SHOT;
	}
	/* Same L2 segment: the frame keeps its source MAC; the destination MAC is
	 * the container's own, whatever the sender had resolved. */
	__builtin_memcpy(fwd.eth->h_dest, fwd.dst->mac, ETH_ALEN);
	/* The redirect skips the destination veth's own hooks: count it there. */
	berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
	berth_count(fwd.dst->ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
	return bpf_redirect_peer(fwd.dst->ifindex, 0);
}

SEC("tc")
int berth_veth_egress(struct __sk_buff *skb)
{
	berth_count(skb->ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_PASS, 0, skb->len);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
