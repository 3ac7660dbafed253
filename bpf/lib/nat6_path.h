/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The translating IPv6 paths (issue 12 item 1), as Docker 29's ip6tables nat
 * table has them: MASQUERADE -s subnet6 ! -o bridge for nat-mode networks
 * (ULA and global alike), DNAT per published port on [::] and on specific
 * host v6 addresses, hairpin. One function per entry program, each called
 * with the packet lib/ipv6.h accepted and summarised (the veth's in three
 * steps, berth_v6nat_veth_tracked / _host / _masq, called at the spots of
 * tc_veth.bpf.c's veth_ingress6 after its guards); each returns a TC
 * action once it has counted the packet, or BERTH_V6NAT_NEXT when the packet
 * is not one it translates (nothing counted nor written: the caller's own
 * v6 guards and verdicts follow).
 *
 * A container's host veth, ingress (cfg: the entry's masquerade port
 * range), first match wins,
 * for a container whose endpoint has BERTH_EP_IPV6 and a packet from its own
 * addr6 (any other source: NEXT, the spoof check is the caller's):
 *   1. a tracked flow (conntrack on the v6 key; a later fragment by the
 *      ports its first fragment recorded): hop limit <= 1 on a source-only
 *      path (masquerade, a published flow's reply) is passed to the kernel
 *      untranslated (it answers time exceeded), on a hairpin it is dropped
 *      TTL_EXCEEDED; too big for the out interface (lib/hop6.h): on a
 *      source-only path to the kernel when its route refuses it, else
 *      TOO_BIG; conntrack may refuse (CT_INVALID); translated,
 *      redirected as the entry says. An ICMPv6 error quoting a tracked flow:
 *      translated back likewise.
 *   2. to a host v6 address (berth_host_addr6) or the network's gateway6,
 *      TCP/UDP on a published v6 port (exact, then ::; LOOPBACK and ROUTED
 *      entries never): hairpin, DNAT to the container and SNAT to its
 *      network's gateway6 (or, within the same network, the client's own
 *      address kept, as lib/tc_veth's IPv4 hairpin); else NEXT.
 *   3. NEXT: inside the own subnet6, link-scope or multicast destinations,
 *      internal, routed-v6 (BERTH_EP_ROUTED6: lib/routed6.h; BERTH_EP_ROUTED
 *      is IPv4's and leaves NAT66 on) and non-masquerading networks.
 *   4. masquerade: a later fragment with no record: drop FRAG_ORPHAN; a
 *      truncated TCP/UDP/echo header: drop MALFORMED; ICMPv6 other than echo:
 *      NEXT (not translated, as for ICMP); another protocol (no NAT66 for
 *      protocols without ports yet): drop NAT_NO_PORT, never sent with the
 *      container's address; a UDP checksum of 0: drop MALFORMED; hop limit
 *      <= 1: passed to the kernel (time exceeded). Route lookup
 *      (bpf_fib_lookup AF_INET6 from the bridge): leaving by a known uplink
 *      with a non-zero addr6 -> SNAT to it, ports by berth_nat_create_snat
 *      (same range and rules as IPv4), redirect out of it; a known uplink
 *      without addr6, or an interface that is no uplink: drop NO_UPLINK; no
 *      route, or too big for it (IPv6 is never fragmented on the way): the
 *      kernel's path, which answers the container.
 *
 * berth_v6nat_uplink (a served interface's ingress):
 *   1. a tracked flow (masquerade replies, published flows): hop limit <= 1
 *      is dropped TTL_EXCEEDED (every translation here changes the
 *      destination); too big for the container's veth: TOO_BIG and an
 *      ICMPv6 Packet Too Big to the sender (lib/hop6.h); a client's packet of a published flow meets the
 *      user's policy (lib/policy.h, the rules' IPv6 fields; deny: drop
 *      POLICY), as on the IPv4 path; translated, redirected. An ICMPv6
 *      error quoting a tracked flow: translated back.
 *   2. to a host v6 address, TCP/UDP on a published port (exact, then ::;
 *      LOOPBACK entries, ::1's, never: they are for the host's sockets):
 *      hop limit <= 1: drop TTL_EXCEEDED; too big: TOO_BIG and a Packet Too
 *      Big, before any flow is made; the user's policy (deny: drop
 *      POLICY); DNAT to the container, the client's source kept, the reply half back
 *      out of this interface to the sender's MAC; bpf_redirect_peer into the
 *      container, so the packet never meets the bridge's choke point.
 *   3. anything else: NEXT.
 */
#ifndef BERTH_LIB_NAT6_PATH_H
#define BERTH_LIB_NAT6_PATH_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/maps.h"
#include "lib/counters.h"
#include "lib/events.h"
#include "lib/addr.h"
#include "lib/ipv6.h"
#include "lib/conntrack.h"
#include "lib/nat.h"
#include "lib/nat6.h"
#include "lib/frag.h"
#include "lib/guard6.h" /* berth_is_host_addr6 */
#include "lib/policy.h"
#include "lib/egress_policy.h"
#include "lib/hop6.h"

/* Not TC actions (they are -1..8): the packet is not for these paths; a new
 * flow was created for it, its orig half is keyed by the packet's tuple: the
 * caller accounts (berth_ct_seen) and sends it from its own frame. */
#define BERTH_V6NAT_NEXT 0x7ffe
#define BERTH_V6NAT_SEND 0x7ffd
/* Both halves of a new source-translated flow are built in berth_ct_build,
 * the orig half keyed by the packet's tuple: choose its port (one call site
 * of berth_nat_create_snat for the v6 paths: its bounded loop is verified
 * once per call site). */
#define BERTH_V6NAT_SNAT 0x7ffc

#define BERTH_V6NAT_UPLINK_IN 0 /* tc_uplink.bpf.c's BERTH_DIR_UPLINK_IN */

#ifndef AF_INET6
#define AF_INET6 10
#endif


static __always_inline int v6nat_veth_drop(struct __sk_buff *skb, __u32 ifindex, __u32 reason, __u32 len)
{
	berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_DROP, reason, len);
	berth_emit_drop_skb(skb, ifindex, BERTH_DIR_FROM_CONTAINER, reason, len);
	return TC_ACT_SHOT;
}

static __always_inline int v6nat_veth_pass(__u32 ifindex, __u32 len)
{
	berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_PASS, 0, len);
	return TC_ACT_UNSPEC;
}

/* Translate per e and send, counted at both ends (dir: where it arrived). */
static __always_inline int v6nat_send(struct __sk_buff *skb, const struct berth_l6 *p, const struct berth_ct_entry *e,
				      __u32 dir, __u32 len)
{
	__u32 ifindex = skb->ifindex;

	if (berth_nat6_out(skb, p, e) < 0) {
		berth_count(ifindex, dir, BERTH_VERDICT_DROP, BERTH_DROP_MALFORMED, len);
		berth_emit_drop_skb(skb, ifindex, dir, BERTH_DROP_MALFORMED, len);
		return TC_ACT_SHOT;
	}
	berth_count(ifindex, dir, BERTH_VERDICT_REDIRECT, 0, len);
	if (e->count_ifindex)
		berth_count(e->count_ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
	return berth_ct_redirect(skb, e);
}

/* An error already translated by berth_nat6_icmp_error: send it as e says. */
static __always_inline int v6nat_send_error(struct __sk_buff *skb, const struct berth_ct_entry *e, __u32 dir, __u32 len)
{
	berth_count(skb->ifindex, dir, BERTH_VERDICT_REDIRECT, 0, len);
	if (e->count_ifindex)
		berth_count(e->count_ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
	return berth_ct_redirect(skb, e);
}

/*
 * Too big for out_ifindex (lib/hop6.h), arriving on an uplink: dropped
 * TOO_BIG, counted, and the sender answered with a Packet Too Big. Returns
 * the TC action.
 */
static __noinline int v6nat_too_big_uplink(struct __sk_buff *skb, __u32 mtu)
{
	__u32 ifindex = skb->ifindex, len = skb->len;

	berth_count(ifindex, BERTH_V6NAT_UPLINK_IN, BERTH_VERDICT_DROP, BERTH_DROP_TOO_BIG, len);
	berth_emit_drop_skb(skb, ifindex, BERTH_V6NAT_UPLINK_IN, BERTH_DROP_TOO_BIG, len);
	return berth_ptb6_reply(skb, mtu);
}

/*
 * Step 1 of both paths: a tracked flow or an ICMPv6 error quoting one.
 * veth: the container's side (hop limit and MTU rules of the source-only
 * paths), network_id its network (0 on an uplink).
 */
__noinline int berth_v6nat_tracked(struct __sk_buff *skb, struct berth_l6 *p, int veth, __u32 network_id)
{
	__u32 dir = veth ? BERTH_DIR_FROM_CONTAINER : BERTH_V6NAT_UPLINK_IN;
	__u32 ifindex = skb->ifindex, len = skb->len, reason = 0, mtu = 0;
	struct berth_ct_entry *e;
	int bad, hop, src_only;

	if (!p)
		return TC_ACT_SHOT;
	if (berth_l6_tracked(p) || berth_frag6_ports_of(p)) {
		e = berth_ct_lookup6(p);
		if (!e || (e->flags & BERTH_CT_ROUTED))
			return BERTH_V6NAT_NEXT;
		src_only = !(e->flags & BERTH_CT_HAIRPIN) && berth_addr_eq(e->rewrite.daddr, (const __be32 *)p->daddr);
		if (p->hop_limit <= 1) {
			if (veth && src_only) {
				berth_count(ifindex, dir, BERTH_VERDICT_PASS, 0, len);
				return TC_ACT_UNSPEC; /* the kernel answers time exceeded */
			}
			reason = BERTH_DROP_TTL_EXCEEDED;
			goto drop;
		}
		/* the user's rules see every packet a client sends to a published
		 * port, so a deny cuts a live flow (as the IPv4 path, tc_uplink) */
		if (!veth && (e->flags & (BERTH_CT_PUBLISHED | BERTH_CT_REPLY)) == BERTH_CT_PUBLISHED &&
		    berth_policy_denies6(p->saddr, e->rewrite.daddr, p->l4.dport, p->l4.proto, len)) {
			reason = BERTH_DROP_POLICY;
			goto drop;
		}
		/* a masqueraded flow's reply; what a container sends out (lib/egress_policy.h) */
		if (veth ? !(e->flags & BERTH_CT_HAIRPIN) && berth_egress_policy6(p, len) : berth_reply_policy6(p, e, len)) {
			reason = BERTH_DROP_POLICY;
			goto drop;
		}
		if (berth_nat6_udp_zero(skb, p)) {
			reason = BERTH_DROP_MALFORMED;
			goto drop;
		}
		/* IPv6 is never fragmented on the way (lib/hop6.h) */
		hop = berth_hop6_check(skb, p, e->out_ifindex, veth && src_only, network_id, &mtu, &reason);
		if (hop == BERTH_HOP_KERNEL) {
			berth_count(ifindex, dir, BERTH_VERDICT_PASS, 0, len);
			return TC_ACT_UNSPEC; /* the kernel answers packet too big */
		}
		if (hop == BERTH_HOP_DROP) {
			if (!veth && reason == BERTH_DROP_TOO_BIG)
				return v6nat_too_big_uplink(skb, mtu);
			goto drop;
		}
		if (p->l4.frag == BERTH_FRAG_LATER) {
			berth_frag_seen(e, len);
		} else {
			reason = berth_ct_seen(e, &p->l4, len);
			if (reason)
				goto drop;
		}
		return v6nat_send(skb, p, e, dir, len);
	}
	if (p->quote_off) {
		e = berth_nat6_icmp_error(skb, p, &bad);
		if (bad) {
			reason = BERTH_DROP_MALFORMED;
			goto drop;
		}
		if (e)
			return v6nat_send_error(skb, e, dir, len);
	}
	return BERTH_V6NAT_NEXT;
drop:
	berth_count(ifindex, dir, BERTH_VERDICT_DROP, reason, len);
	berth_emit_drop_skb(skb, ifindex, dir, reason, len);
	return TC_ACT_SHOT;
}

/* Hairpin: a container to a published v6 port of the host (step 2). */
__noinline int berth_v6nat_hairpin(struct __sk_buff *skb, struct berth_l6 *p, const struct berth_endpoint *src,
					 const struct berth_publish_value *pub)
{
	__u32 ifindex = skb->ifindex, len = skb->len, reason = 0, mtu = 0;
	struct berth_ct_entry *orig, *reply, *e;
	struct berth_network_key nkey;
	struct berth_ct_key okey;
	struct berth_net *tnet;
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	void *data, *end;
	struct ethhdr *eth;

	if (!p || !src || !pub)
		return TC_ACT_SHOT;
	if (p->hop_limit <= 1)
		return v6nat_veth_drop(skb, ifindex, BERTH_DROP_TTL_EXCEEDED, len);
	if (berth_hop6_check(skb, p, pub->ifindex, 0, 0, &mtu, &reason) != BERTH_HOP_SEND)
		return v6nat_veth_drop(skb, ifindex, reason, len);
	if (berth_nat6_udp_zero(skb, p))
		return v6nat_veth_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
	nkey.network_id = pub->network_id;
	tnet = bpf_map_lookup_elem(&berth_net, &nkey);
	if (!tnet || !(tnet->flags & BERTH_EP_IPV6))
		return v6nat_veth_drop(skb, ifindex, BERTH_DROP_NO_ENDPOINT, len);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return v6nat_veth_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
	__builtin_memcpy(smac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(dmac, eth->h_dest, ETH_ALEN);
	if (!berth_ct_scratch(&orig, &reply))
		return v6nat_veth_drop(skb, ifindex, BERTH_DROP_CT_FULL, len);

	berth_ct_key6_of(&okey, p);
	orig->rewrite = okey;
	berth_addr_copy(orig->rewrite.saddr, tnet->gateway6);
	berth_addr_copy(orig->rewrite.daddr, pub->addr);
	orig->rewrite.dport = pub->port;
	berth_ct_set_out(orig, pub->ifindex, BERTH_OUT_PEER, pub->ifindex, tnet->gw_mac, pub->mac);
	berth_ct_reverse(&reply->rewrite, &okey);
	berth_ct_set_out(reply, ifindex, BERTH_OUT_PEER, ifindex, dmac, smac);
	berth_ct_init_pair(orig, reply, BERTH_CT_HAIRPIN, &p->l4);
	/* same network, another container: the client's own address, as IPv4 */
	if (pub->network_id == src->network_id && !berth_addr_eq(okey.saddr, pub->addr)) {
		struct berth_ct_key rkey;
		int ret;

		berth_addr_copy(orig->rewrite.saddr, okey.saddr);
		berth_ct_reverse(&rkey, &orig->rewrite);
		ret = berth_ct_insert(&rkey, reply);
		if (ret == 0) {
			e = berth_ct_commit(&okey, orig, &rkey, &reason);
			if (!e)
				return v6nat_veth_drop(skb, ifindex, reason, len);
			return BERTH_V6NAT_SEND;
		}
		if (ret != -EEXIST) {
			berth_stat_add(BERTH_STAT_CT_FULL, 1);
			return v6nat_veth_drop(skb, ifindex, BERTH_DROP_CT_FULL, len);
		}
		berth_addr_copy(orig->rewrite.saddr, tnet->gateway6);
	}
	return BERTH_V6NAT_SNAT;
}

/* Masquerade (step 4): route lookup, SNAT to the uplink's addr6. */
__noinline int berth_v6nat_masq(struct __sk_buff *skb, struct berth_l6 *p, const struct berth_endpoint *src,
				       const struct berth_net *net)
{
	__u32 ifindex = skb->ifindex, len = skb->len;
	struct berth_ct_entry *orig, *reply;
	struct bpf_fib_lookup fib = {};
	struct berth_ifindex_key ukey;
	struct berth_ct_key okey;
	struct berth_uplink *up;
	__u32 mtu_len = 0;
	long rc;

	if (!p || !src || !net)
		return TC_ACT_SHOT;
	if (p->l4.frag == BERTH_FRAG_LATER)
		return v6nat_veth_drop(skb, ifindex, BERTH_DROP_FRAG_ORPHAN, len);
	if (!berth_l6_tracked(p)) {
		if (p->l4.proto == BERTH_NH_TCP || p->l4.proto == BERTH_NH_UDP ||
		    (p->l4.proto == BERTH_NH_ICMP && berth_icmp6_is_echo(p->l4.icmp_type)))
			return v6nat_veth_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
		if (p->l4.proto == BERTH_NH_ICMP)
			return BERTH_V6NAT_NEXT; /* ICMPv6 other than echo: not translated */
		/* no NAT66 without ports yet: never leaves with the container's address */
		return v6nat_veth_drop(skb, ifindex, BERTH_DROP_NAT_NO_PORT, len);
	}
	if (berth_nat6_udp_zero(skb, p))
		return v6nat_veth_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
	if (p->hop_limit <= 1)
		return v6nat_veth_pass(ifindex, len); /* the kernel answers time exceeded */

	fib.family = AF_INET6;
	fib.l4_protocol = p->l4.proto;
	fib.sport = p->l4.sport;
	fib.dport = p->l4.dport;
	fib.tot_len = skb->gso_size ? 0 : (__u16)(p->l4.l3_end - p->l4.l3_off);
	__builtin_memcpy(fib.ipv6_src, p->saddr, 16);
	__builtin_memcpy(fib.ipv6_dst, p->daddr, 16);
	fib.ifindex = net->bridge_ifindex ? net->bridge_ifindex : ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return v6nat_veth_pass(ifindex, len); /* unreachable, too big, ...: the kernel answers */
	/* a GSO packet (tot_len 0: the route checked no size) whose segments do not
	 * fit the device the route leaves by: the kernel's ip6_forward refuses it
	 * with a packet too big, as for a single packet above */
	if (skb->gso_size && bpf_check_mtu(skb, fib.ifindex, &mtu_len, 0, BPF_MTU_CHK_SEGS) > 0)
		return v6nat_veth_pass(ifindex, len);
	ukey.ifindex = fib.ifindex;
	up = bpf_map_lookup_elem(&berth_uplink, &ukey);
	if (!up || berth_addr_is_zero(up->addr6))
		return v6nat_veth_drop(skb, ifindex, BERTH_DROP_NO_UPLINK, len);
	if (!berth_ct_scratch(&orig, &reply))
		return v6nat_veth_drop(skb, ifindex, BERTH_DROP_CT_FULL, len);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		orig->out_kind = BERTH_OUT_MAC;
		__builtin_memcpy(orig->out_smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(orig->out_dmac, fib.dmac, ETH_ALEN);
	} else {
		orig->out_kind = BERTH_OUT_NEIGH;
		__builtin_memset(orig->out_smac, 0, ETH_ALEN);
		__builtin_memset(orig->out_dmac, 0, ETH_ALEN);
	}
	berth_ct_key6_of(&okey, p);
	orig->rewrite = okey;
	berth_addr_copy(orig->rewrite.saddr, up->addr6);
	orig->out_ifindex = fib.ifindex;
	orig->count_ifindex = fib.ifindex;
	berth_ct_reverse(&reply->rewrite, &okey);
	berth_ct_set_out(reply, ifindex, BERTH_OUT_PEER, ifindex, net->gw_mac, src->mac);
	berth_ct_init_pair(orig, reply, BERTH_CT_MASQ, &p->l4);
	return BERTH_V6NAT_SNAT;
}

/*
 * BERTH_V6NAT_SNAT: the port of the flow built in berth_ct_build. SEND, or
 * the drop's action. Static, so that the verifier sees the caller's cfg (the
 * entry's load-time constants): berth_nat_create_snat's port loop is then
 * bounded by the configured tries, not by BERTH_NAT_MAX_TRIES. At most
 * BERTH_NAT6_MAX_TRIES random tries after the kept port (the same range and
 * rules as IPv4, fewer tries): the IPv4 path's two call sites of that loop
 * already take most of the verifier's 1M-instruction budget.
 */
#define BERTH_NAT6_MAX_TRIES 8
static __noinline __attribute__((unused)) int berth_v6nat_snat(struct __sk_buff *skb, struct berth_l6 *p, const struct berth_nat_cfg *cfg)
{
	struct berth_ct_entry *orig, *reply;
	struct berth_nat_cfg c6 = *cfg;
	struct berth_ct_key okey;
	__u32 reason = 0;

	if (c6.tries > BERTH_NAT6_MAX_TRIES)
		c6.tries = BERTH_NAT6_MAX_TRIES;
	if (!berth_ct_scratch(&orig, &reply))
		return v6nat_veth_drop(skb, skb->ifindex, BERTH_DROP_CT_FULL, skb->len);
	berth_ct_key6_of(&okey, p);
	if (!berth_nat_create_snat(skb, &c6, &okey, orig, reply, &reason))
		return v6nat_veth_drop(skb, skb->ifindex, reason, skb->len);
	return BERTH_V6NAT_SEND;
}

/* BERTH_V6NAT_SEND: the new flow's first packet, sent from a frame of its own. */
__noinline int berth_v6nat_send_new(struct __sk_buff *skb, struct berth_l6 *p)
{
	struct berth_ct_entry *e;

	if (!p)
		return TC_ACT_SHOT;
	e = berth_ct_lookup6(p);
	if (!e)
		return v6nat_veth_drop(skb, skb->ifindex, BERTH_DROP_NO_ENDPOINT, skb->len);
	berth_ct_seen(e, &p->l4, skb->len);
	return v6nat_send(skb, p, e, BERTH_DIR_FROM_CONTAINER, skb->len);
}

/* A new flow's SNAT and first packet, after hairpin or masquerade said so. */
static __always_inline int berth_v6nat_finish(struct __sk_buff *skb, struct berth_l6 *p, const struct berth_nat_cfg *cfg, int ret)
{
	if (ret == BERTH_V6NAT_SNAT)
		ret = berth_v6nat_snat(skb, p, cfg);
	if (ret != BERTH_V6NAT_SEND)
		return ret;
	return berth_v6nat_send_new(skb, p);
}

/*
 * The spots of the v6 path (tc_veth.bpf.c's veth_ingress6) one by one, for
 * a packet its source check accepted; each returns BERTH_V6NAT_NEXT for what
 * it does not translate. Step 1: tracked flows and ICMPv6 errors.
 */
static __noinline __attribute__((unused)) int berth_v6nat_veth_tracked(struct __sk_buff *skb, struct berth_l6 *p, const struct berth_endpoint *src)
{
	if (!(src->flags & BERTH_EP_IPV6) || !berth_addr_eq((const __be32 *)p->saddr, src->addr6))
		return BERTH_V6NAT_NEXT;
	return berth_v6nat_tracked(skb, p, 1, src->network_id);
}

/* Step 2: to a host v6 address or the gateway6: hairpin through a published port. */
static __noinline __attribute__((unused)) int berth_v6nat_veth_host(struct __sk_buff *skb, struct berth_l6 *p, const struct berth_endpoint *src,
						 const struct berth_nat_cfg *cfg)
{
	struct berth_publish_value *pub;
	__be32 da[4];

	if (!(src->flags & BERTH_EP_IPV6) || !berth_addr_eq((const __be32 *)p->saddr, src->addr6) || !p->l4.has_ports ||
	    (p->l4.proto != BERTH_NH_TCP && p->l4.proto != BERTH_NH_UDP) || (src->flags & BERTH_EP_INTERNAL))
		return BERTH_V6NAT_NEXT;
	__builtin_memcpy(da, p->daddr, 16);
	pub = berth_publish_find6(da, p->l4.dport, p->l4.proto);
	if (!pub)
		return BERTH_V6NAT_NEXT;
	return berth_v6nat_finish(skb, p, cfg, berth_v6nat_hairpin(skb, p, src, pub));
}

/* Step 4: leaving the own subnet6 (the caller checked it, internal, link scope): masquerade. */
static __noinline __attribute__((unused)) int berth_v6nat_veth_masq(struct __sk_buff *skb, struct berth_l6 *p, const struct berth_endpoint *src,
						 const struct berth_net *net, const struct berth_nat_cfg *cfg)
{
	if (!(src->flags & BERTH_EP_IPV6) || !(net->flags & BERTH_EP_IPV6) ||
	    !berth_addr_eq((const __be32 *)p->saddr, src->addr6) || berth_ip6_is_multicast(p->daddr) ||
	    (src->flags & (BERTH_EP_INTERNAL | BERTH_EP_ROUTED6)) || !(src->flags & BERTH_EP_MASQUERADE))
		return BERTH_V6NAT_NEXT;
	return berth_v6nat_finish(skb, p, cfg, berth_v6nat_masq(skb, p, src, net));
}

/* A new flow from outside to a published v6 port (uplink step 2). */
static __noinline __attribute__((unused)) int berth_v6nat_publish(struct __sk_buff *skb, struct berth_l6 *p, const struct berth_publish_value *pub)
{
	__u32 ifindex = skb->ifindex, len = skb->len, reason = 0;
	struct berth_ct_entry *orig, *reply, *e;
	struct berth_network_key nkey;
	struct berth_ct_key okey, rkey;
	struct berth_net *net;
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	void *data, *end;
	struct ethhdr *eth;
	int ret;

	if (p->hop_limit <= 1) {
		reason = BERTH_DROP_TTL_EXCEEDED;
		goto drop;
	}
	/* the user's rules (DOCKER-USER, ip6tables) come before berth's own verdicts */
	if (berth_policy_denies6(p->saddr, pub->addr, p->l4.dport, p->l4.proto, len)) {
		reason = BERTH_DROP_POLICY;
		goto drop;
	}
	if (berth_nat6_udp_zero(skb, p)) {
		reason = BERTH_DROP_MALFORMED;
		goto drop;
	}
	nkey.network_id = pub->network_id;
	net = bpf_map_lookup_elem(&berth_net, &nkey);
	if (!net) {
		reason = BERTH_DROP_NO_ENDPOINT;
		goto drop;
	}
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end) {
		reason = BERTH_DROP_MALFORMED;
		goto drop;
	}
	__builtin_memcpy(smac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(dmac, eth->h_dest, ETH_ALEN);
	if (!berth_ct_scratch(&orig, &reply)) {
		reason = BERTH_DROP_CT_FULL;
		goto drop;
	}
	berth_ct_key6_of(&okey, p);
	orig->rewrite = okey;
	berth_addr_copy(orig->rewrite.daddr, pub->addr);
	orig->rewrite.dport = pub->port;
	berth_ct_set_out(orig, pub->ifindex, BERTH_OUT_PEER, pub->ifindex, net->gw_mac, pub->mac);
	berth_ct_reverse(&reply->rewrite, &okey);
	berth_ct_set_out(reply, ifindex, BERTH_OUT_MAC, ifindex, dmac, smac);
	berth_ct_init_pair(orig, reply, BERTH_CT_PUBLISHED, &p->l4);
	berth_ct_reverse(&rkey, &orig->rewrite);
	ret = berth_ct_insert(&rkey, reply);
	if (ret == -EEXIST) {
		reason = BERTH_DROP_NAT_NO_PORT; /* the container already has a flow with that tuple */
		goto drop;
	}
	if (ret < 0) {
		berth_stat_add(BERTH_STAT_CT_FULL, 1);
		reason = BERTH_DROP_CT_FULL;
		goto drop;
	}
	e = berth_ct_commit(&okey, orig, &rkey, &reason);
	if (!e)
		goto drop;
	berth_ct_seen(e, &p->l4, len);
	return BERTH_V6NAT_SEND;
drop:
	berth_count(ifindex, BERTH_V6NAT_UPLINK_IN, BERTH_VERDICT_DROP, reason, len);
	berth_emit_drop_skb(skb, ifindex, BERTH_V6NAT_UPLINK_IN, reason, len);
	return TC_ACT_SHOT;
}

/* An IPv6 packet arriving on a served interface; see the top of this file. */
static __noinline __attribute__((unused)) int berth_v6nat_uplink(struct __sk_buff *skb, struct berth_l6 *p)
{
	struct berth_publish_value *pub;
	struct berth_ct_entry *e;
	__be32 da[4];
	int ret;

	ret = berth_v6nat_tracked(skb, p, 0, 0);
	if (ret != BERTH_V6NAT_NEXT)
		return ret;
	if (!p->l4.has_ports || (p->l4.proto != BERTH_NH_TCP && p->l4.proto != BERTH_NH_UDP))
		return BERTH_V6NAT_NEXT;
	__builtin_memcpy(da, p->daddr, 16);
	if (!berth_is_host_addr6(da))
		return BERTH_V6NAT_NEXT;
	pub = berth_publish_find6(da, p->l4.dport, p->l4.proto);
	if (!pub)
		return BERTH_V6NAT_NEXT; /* the host's own services */
	if (p->hop_limit > 1) {
		__u32 mtu = 0, reason = 0;
		int hop = berth_hop6_check(skb, p, pub->ifindex, 0, 0, &mtu, &reason);

		if (hop != BERTH_HOP_SEND && reason == BERTH_DROP_TOO_BIG)
			return v6nat_too_big_uplink(skb, mtu);
		if (hop != BERTH_HOP_SEND) {
			berth_count(skb->ifindex, BERTH_V6NAT_UPLINK_IN, BERTH_VERDICT_DROP, reason, skb->len);
			return TC_ACT_SHOT;
		}
	}
	ret = berth_v6nat_publish(skb, p, pub);
	if (ret != BERTH_V6NAT_SEND)
		return ret;
	/* sent from this frame: the rewrite's does not stack on the flow's creation */
	e = berth_ct_lookup6(p);
	if (!e) {
		berth_count(skb->ifindex, BERTH_V6NAT_UPLINK_IN, BERTH_VERDICT_DROP, BERTH_DROP_NO_ENDPOINT, skb->len);
		return TC_ACT_SHOT;
	}
	return v6nat_send(skb, p, e, BERTH_V6NAT_UPLINK_IN, skb->len);
}

#endif
