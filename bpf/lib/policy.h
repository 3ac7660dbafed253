/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The user's policy (Docker's DOCKER-USER): ordered allow/deny rules that
 * every packet of an inbound flow to a published port (and every packet into
 * a routed network: lib/routed_policy.h) meets before berth's
 * own verdicts, the first packet of a flow and every later one alike (as
 * DOCKER-USER sees every forwarded packet), so a new deny cuts a live flow
 * at its next packet. The controller writes a whole rule set into the bank
 * packets are not reading (rules in slots 0..n-1, an END after the last),
 * then flips berth_policy_active: a packet reads one bank, old or new. The
 * walk stops at the first END; the default is allow. Matched packets are
 * counted per slot. Both families: an IPv4 packet meets a rule on its IPv4
 * fields unless the rule has BERTH_POLICY_NOT_V4, an IPv6 packet (the v6
 * published path, lib/nat6_path.h) on its *6 fields when it has
 * BERTH_POLICY_V6, so an IPv4 rule never matches IPv6 nor the reverse.
 * Two kinds of rule, each meeting its own packets: inbound rules (egress 0)
 * what arrives from outside (published flows, routed networks, the replies
 * of masqueraded flows: lib/egress_policy.h), egress rules (egress 1, a
 * `destination:`) what containers send out of the host (same header).
 */
#ifndef BERTH_LIB_POLICY_H
#define BERTH_LIB_POLICY_H

#include "lib/maps.h"
#include "lib/addr.h"

/* A packet as the policy sees it (a small struct: a global function takes a
 * pointer to it, sized by BTF). Addresses as the flow maps hold them
 * (lib/addr.h): IPv4 as ::ffff:a.b.c.d. */
struct berth_policy_pkt {
	__be32 saddr[4];      /* the client */
	__be32 caddr[4];      /* the container the published port leads to */
	__be16 hport;         /* the published host port (into a routed network: the packet's own dport, the container port) */
	__u8 proto;
	__u8 v6;              /* 1: an IPv6 packet, matched on the rules' *6 fields */
	__u32 len;
	/* What a container sends out (lib/egress_policy.h): egress 1, saddr and
	 * caddr both the sender, daddr the destination, hport the destination
	 * port. Only egress rules meet it, and only it meets them. */
	__be32 daddr[4];
	__u8 egress;
	__u8 pad[3];
};

/* Does rule r meet packet q (addresses and family; port and proto aside)? */
static __always_inline int berth_policy_addr_match(const struct berth_policy_rule *r, const struct berth_policy_pkt *q)
{
	if (q->v6)
		return (r->families & BERTH_POLICY_V6) && berth_addr_in(q->saddr, r->src6_addr, r->src6_mask) &&
		       berth_addr_in(q->caddr, r->dst6_addr, r->dst6_mask);
	return !(r->families & BERTH_POLICY_NOT_V4) && (berth_addr4(q->saddr) & r->src_mask) == r->src_addr &&
	       (berth_addr4(q->caddr) & r->dst_mask) == r->dst_addr;
}

/* An egress rule's destination (out_*) against packet q's. */
static __always_inline int berth_policy_out_match(const struct berth_policy_rule *r, const struct berth_policy_pkt *q)
{
	if (q->v6)
		return berth_addr_in(q->daddr, r->out6_addr, r->out6_mask);
	return (berth_addr4(q->daddr) & r->out_mask) == r->out_addr;
}

/* 1 when the policy denies packet q.
 * A global function: the verifier checks its rule loop once, not once per
 * path of its caller. No packet (never so): denied, fail closed. */
__noinline int berth_policy_denies(const struct berth_policy_pkt *q)
{
	struct berth_policy_ctl *ctl;
	struct berth_policy_rule *r;
	struct berth_pb *hits;
	__u32 zero = 0, base, i;

	if (!q)
		return 1;
	ctl = bpf_map_lookup_elem(&berth_policy_active, &zero);
	base = (ctl && ctl->bank) ? BERTH_MAX_POLICY_RULES : 0;
	for (i = 0; i < BERTH_MAX_POLICY_RULES; i++) {
		__u32 slot = base + i;

		r = bpf_map_lookup_elem(&berth_policy, &slot);
		if (!r || r->action == BERTH_POLICY_END)
			return 0;
		if (r->egress != q->egress || !berth_policy_addr_match(r, q))
			continue;
		if (q->egress && !berth_policy_out_match(r, q))
			continue;
		if ((r->port && r->port != q->hport) || (r->proto && r->proto != q->proto))
			continue;
		hits = bpf_map_lookup_elem(&berth_policy_hits, &slot);
		if (hits) {
			hits->packets += 1;
			hits->bytes += q->len;
		}
		return r->action == BERTH_POLICY_DENY;
	}
	return 0;
}

/* The IPv4 paths' call: client saddr to container caddr via host port hport. */
static __always_inline int berth_policy_denies4(__be32 saddr, __be32 caddr, __be16 hport, __u8 proto, __u32 len)
{
	struct berth_policy_pkt q = { .hport = hport, .proto = proto, .v6 = 0, .len = len };

	berth_addr_set4(q.saddr, saddr);
	berth_addr_set4(q.caddr, caddr);
	return berth_policy_denies(&q);
}

/* The IPv6 paths' call: client saddr (16 bytes, as in the header) to container caddr. */
static __always_inline int berth_policy_denies6(const __u8 *saddr, const __be32 *caddr, __be16 hport, __u8 proto, __u32 len)
{
	struct berth_policy_pkt q = { .hport = hport, .proto = proto, .v6 = 1, .len = len };

	__builtin_memcpy(q.saddr, saddr, 16);
	berth_addr_copy(q.caddr, caddr);
	return berth_policy_denies(&q);
}

#endif
