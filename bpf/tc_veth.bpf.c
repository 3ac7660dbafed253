// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Entry points on a container's host-side veth (tcx, or clsact as fallback).
 *   berth_veth_ingress: what the container sends.
 *   berth_veth_egress:  what the kernel (bridge, routing) delivers to it.
 * Logic lives in lib/; this file only wires decisions to actions and counters.
 *
 * Ingress, in order (first match wins):
 *   0. a source address that is not the container's own: drop SPOOFED
 *      (DHCP aside), before any lookup that the source would steer;
 *   1. a packet of a tracked flow (berth_ct): translated, sent as the entry
 *      says (replies of published and hairpin flows, masqueraded flows),
 *      unless conntrack refuses it (an RST out of the receiver's window,
 *      scaled as the SYNs announced: drop CT_INVALID);
 *      an ICMP error quoting a tracked flow: translated back likewise;
 *   2. to another local container: same network + icc -> redirect, else drop;
 *   3. to a host address or the network's gateway: a published port (not
 *      LOOPBACK) -> hairpin: DNAT to the container, SNAT to that container's
 *      network gateway, both ways by redirect; otherwise pass (host services);
 *   4. inside the own subnet -> pass (the bridge's business), except to
 *      another container of an icc=false network (one berth has not
 *      programmed yet) -> drop ICC; an INTERNAL network -> drop INTERNAL;
 *   5. a routed network (lib/routed.h): TCP/UDP recorded as a routed flow
 *      (identity, so that its replies get in; table full: drop CT_FULL),
 *      passed untranslated; a tracked routed flow (1.) is passed likewise;
 *      masquerade on: route lookup; leaving by a known uplink -> SNAT to the
 *      uplink's address (source port kept when free: no flow holds it and no
 *      host socket owns its replies, lib/hostsock.h), redirect out of it;
 *      another protocol than TCP, UDP and ICMP (GRE, SCTP, ESP, ...): the
 *      addresses alone, one flow per (container, remote, protocol), and a
 *      second container to the same remote and protocol is dropped
 *      NAT_NO_PORT (lib/generic.h); ICMP other than echo passes;
 *      masquerade off -> pass, untranslated (Docker's behaviour).
 * Fragments (lib/frag.h): a first fragment is translated like a whole
 * datagram (tracked flows, new masqueraded and hairpin flows) and records its
 * ports; a later fragment takes them from there to find its tracked half
 * (step 1), and gets its addresses rewritten; one of a protocol without ports
 * (lib/generic.h) needs no record, its tuple is its addresses and protocol.
 * A later fragment with no record (or no flow) that would leave masqueraded
 * is dropped (FRAG_ORPHAN), never sent untranslated; to the host or inside
 * the subnet it is passed as before.
 * TTL and MTU (lib/hop.h), before anything is translated: on the paths that
 * translate the source only (masquerade; replies of published flows) TTL <= 1,
 * or DF and bigger than the out interface's MTU, is passed untranslated once
 * the kernel's own route proves it refuses it (it answers time exceeded /
 * frag needed; otherwise it is dropped: nothing leaves untranslated); too big
 * with DF clear is dropped (TOO_BIG: berth does not fragment). Hairpin, which
 * translates the destination (and whose reply would reach its client
 * untranslated through the bridge): TTL <= 1 is dropped (TTL_EXCEEDED), too
 * big for the target's veth is dropped (TOO_BIG). "Bigger" is the datagram's
 * tot_len: bytes past it, which the kernel trims, never count.
 * The user's egress rules (a `destination:`, lib/egress_policy.h; deny: drop
 * POLICY), both families: every packet of a tracked flow but hairpin (1.),
 * and what leaves the own subnet for outside (before 5.: routed, masquerade,
 * masquerade off); skipped unless the rule set in force has one.
 * IPv4 from an IPv6-only network (BERTH_EP_NO_IPV4), broadcast and DHCP
 * included, is dropped NO_IPV6.
 * IPv6 (issue 12) goes to veth_ingress6 / veth_egress6, each family with the
 * BPF stack to itself; see veth_ingress6 for its steps (lib/guard6.h).
 */
#include "kernel.h"
#include "berth_contract.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/counters.h"
#include "lib/forward.h"
#include "lib/events.h"
#include "lib/l4.h"
#include "lib/conntrack.h"
#include "lib/nat.h"
#include "lib/generic.h"
#include "lib/publish.h"
#include "lib/guard.h"
#include "lib/frag.h"
#include "lib/hop.h"
#include "lib/routed.h"
#include "lib/guard6.h"
#include "lib/nat6_path.h"
#include "lib/routed6.h"
#include "lib/egress_policy.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* Load-time settings. berth_fast_path = 0 keeps counting but never redirects
 * or drops: the kernel path with berth's counters (used to compare paths). */
const volatile __u8 berth_fast_path = 1;
/* Source ports for masquerade and hairpin (host byte order, inclusive), and
 * how many random tries. Always set by the controller at load (its one
 * default is in src/domain/config.ts); 0 leaves no port to take: NAT_NO_PORT. */
const volatile __u16 berth_nat_port_min = 0;
const volatile __u16 berth_nat_port_max = 0;
const volatile __u32 berth_nat_port_tries = 32;

/* Keeps every contract enum in the object's BTF (see berth_contract.h). */
const volatile struct berth_btf_anchor berth_btf_anchor;

static __always_inline int veth_pass(__u32 ifindex, __u32 len)
{
	berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_PASS, 0, len);
	return TC_ACT_UNSPEC;
}

static __always_inline int veth_drop(struct __sk_buff *skb, __u32 ifindex, __u32 reason, __u32 len)
{
	berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_DROP, reason, len);
	berth_emit_drop_skb(skb, ifindex, BERTH_DIR_FROM_CONTAINER, reason, len);
	return TC_ACT_SHOT;
}

/* Translate per the half e and send; counted at both ends. A first fragment
 * records its ports for the later ones, which get their addresses only. */
static __always_inline int veth_ct_out(struct __sk_buff *skb, const struct berth_l4 *p, struct berth_ct_entry *e,
				       __u32 ifindex, __u32 len)
{
	int ret;

	if (p->frag == BERTH_FRAG_LATER) {
		ret = berth_frag_apply(skb, p, &e->rewrite);
	} else {
		berth_frag_record(skb, p);
		ret = berth_nat_apply(skb, p, &e->rewrite, 1);
	}
	if (ret < 0)
		return veth_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
	berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
	/* Direction 1: to_container for a container veth, "leaving" for an uplink. */
	if (e->count_ifindex)
		berth_count(e->count_ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
	return berth_ct_redirect(skb, e);
}

static __always_inline void nat_cfg(struct berth_nat_cfg *cfg)
{
	cfg->port_min = berth_nat_port_min;
	cfg->port_max = berth_nat_port_max;
	cfg->tries = berth_nat_port_tries > BERTH_NAT_MAX_TRIES ? BERTH_NAT_MAX_TRIES : berth_nat_port_tries;
}

/*
 * IPv6 from a container: the whole v6 path in one place (lib/guard6.h has
 * the decisions). In order:
 *   0. parse (extension headers walked); malformed: passed for the kernel
 *      to drop, except to ::1: LOOPBACK_ONLY (counted, lib/guard6.h); what
 *      berth refuses to parse (a jumbogram, too many or repeated extension
 *      headers, headers it cannot pull in) would escape
 *      every check: dropped MALFORMED;
 *      the source check (berth_source_check6): own addr6, link-local, or ::
 *      for NDP/MLD, else SPOOFED; a network without IPv6: link traffic only,
 *      else NO_IPV6;
 *   1. tracked flows and ICMPv6 errors quoting them (lib/nat6_path.h; too
 *      big for the out interface, lib/hop6.h: to the kernel untranslated when
 *      its route refuses it, which answers Packet Too Big, else TOO_BIG);
 *   2. to another local container (berth_ep_by_ip6): same network + icc ->
 *      redirect (destination MAC set), else ISOLATION / ICC;
 *   3. link traffic (NDP, MLD, link-local): pass;
 *   4. to a host address or the gateway: hairpin to a published v6 port
 *      (lib/nat6_path.h); else pass;
 *   5. inside the own subnet6: icc=false -> ICC (a container berth has not
 *      programmed), else pass; leaving it from an INTERNAL network: INTERNAL;
 *   6. a routed-v6 network (gateway_mode_ipv6=routed, lib/routed6.h): no
 *      NAT66; TCP/UDP from its addr6 recorded as a routed flow (identity, so
 *      that its replies get in at the bridge; table full: CT_FULL) or
 *      accounted to the one it belongs to, and passed untranslated;
 *   7. masquerade (NAT66, lib/nat6_path.h) to the uplink's addr6; what it
 *      does not translate (ICMPv6 other than echo, no masquerade) passes.
 */
static __noinline int veth_ingress6(struct __sk_buff *skb)
{
	struct berth_ifindex_key skey = { .ifindex = skb->ifindex };
	struct berth_network_key nkey;
	struct berth_endpoint *src, *dst;
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	struct berth_net *net;
	struct berth_fwd fwd;
	struct berth_nat_cfg cfg;
	struct berth_l6 *q = berth_l6_buf();
	struct ethhdr *eth;
	__u32 reason;
	int st, ret;

	src = bpf_map_lookup_elem(&berth_ep_by_ifindex, &skey);
	if (!src || !q || !berth_fast_path)
		return veth_pass(ifindex, len);
	st = berth_l6_load(skb, q);
	if (st == BERTH_V6_MALFORMED) {
		/* to ::1: counted here (lib/guard6.h), the rest the kernel drops */
		reason = berth_container_refuse6(skb);
		if (reason)
			return veth_drop(skb, ifindex, reason, len);
		return veth_pass(ifindex, len); /* the receiving kernel drops it */
	}
	if (st != BERTH_V6_OK)
		return veth_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);

	/* 0. the container speaks only for itself */
	reason = berth_source_check6(src, q);
	if (reason)
		return veth_drop(skb, ifindex, reason, len);

	/* 1. tracked flows (conntrack lookup, ICMPv6 errors): lib/nat6_path.h */
	ret = berth_v6nat_veth_tracked(skb, q, src);
	if (ret != BERTH_V6NAT_NEXT)
		return ret;

	/* 2. another local container */
	dst = berth_ep6_lookup(BERTH_L6_DADDR(q));
	if (dst) {
		if (dst->ifindex == ifindex)
			return veth_pass(ifindex, len);
		eth = (void *)(long)skb->data;
		if ((void *)(eth + 1) > (void *)(long)skb->data_end)
			return veth_pass(ifindex, len);
		berth_forward_between(src, dst, eth, &fwd);
		/* icc off: neighbour discovery between neighbours still works */
		if (fwd.verdict == BERTH_VERDICT_DROP && fwd.reason == BERTH_DROP_ICC && berth_l6_is_ndp(q))
			return veth_pass(ifindex, len);
		if (fwd.verdict == BERTH_VERDICT_DROP)
			return veth_drop(skb, ifindex, fwd.reason, len);
		__builtin_memcpy(eth->h_dest, dst->mac, ETH_ALEN);
		berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
		berth_count(dst->ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
		return bpf_redirect_peer(dst->ifindex, 0);
	}

	/* 3. the link's own traffic */
	if (berth_l6_link_only(q) || berth_ip6_is_link_scope(q->daddr))
		return veth_pass(ifindex, len);

	nkey.network_id = src->network_id;
	net = bpf_map_lookup_elem(&berth_net, &nkey);

	/* 4. the host: hairpin through a published v6 port (lib/nat6_path.h); else its services */
	if (berth_is_host_addr6(BERTH_L6_DADDR(q)) || (net && berth_addr_eq(BERTH_L6_DADDR(q), net->gateway6))) {
		nat_cfg(&cfg);
		ret = berth_v6nat_veth_host(skb, q, src, &cfg);
		if (ret != BERTH_V6NAT_NEXT)
			return ret;
		return veth_pass(ifindex, len);
	}

	/* 5. own subnet; internal networks stay inside it */
	if (!net)
		return veth_pass(ifindex, len);
	if (berth_in_subnet6(net, BERTH_L6_DADDR(q))) {
		reason = berth_icc_check6(src, net, BERTH_L6_DADDR(q));
		if (reason)
			return veth_drop(skb, ifindex, reason, len);
		return veth_pass(ifindex, len);
	}
	if (src->flags & BERTH_EP_INTERNAL)
		return veth_drop(skb, ifindex, BERTH_DROP_INTERNAL, len);
	/* leaving the host: the user's egress rules (lib/egress_policy.h) */
	if (berth_egress_policy6(q, len))
		return veth_drop(skb, ifindex, BERTH_DROP_POLICY, len);

	/* 6. routed-v6 (lib/routed6.h): tracked, untranslated */
	if (src->flags & BERTH_EP_ROUTED6) {
		reason = berth_routed6_track(q, src, len);
		if (reason)
			return veth_drop(skb, ifindex, reason, len);
		return veth_pass(ifindex, len);
	}
	/* 7. masquerade (NAT66, lib/nat6_path.h); what it does not translate
	 * (ICMPv6 other than echo, non-masquerading networks) is passed */
	nat_cfg(&cfg);
	ret = berth_v6nat_veth_masq(skb, q, src, net, &cfg);
	if (ret != BERTH_V6NAT_NEXT)
		return ret;
	return veth_pass(ifindex, len);
}

/* IPv4 broadcast or multicast (DHCP, ...) from a container: passed, except
 * from an IPv6-only network's, which has no IPv4 at all (NO_IPV6). */
static __noinline int veth_ingress4_group(struct __sk_buff *skb)
{
	struct berth_ifindex_key skey = { .ifindex = skb->ifindex };
	struct berth_endpoint *src = bpf_map_lookup_elem(&berth_ep_by_ifindex, &skey);

	if (src && berth_fast_path && (src->flags & BERTH_EP_NO_IPV4))
		return veth_drop(skb, skb->ifindex, BERTH_DROP_NO_IPV6, skb->len);
	return veth_pass(skb->ifindex, skb->len);
}

/* IPv4 from a container (and the rest of L2): steps 0-5 above. */
static __noinline int veth_ingress4(struct __sk_buff *skb)
{
	struct berth_ifindex_key skey = { .ifindex = skb->ifindex };
	struct berth_network_key nkey;
	struct berth_ct_entry *orig, *reply;
	struct berth_ct_key okey;
	struct berth_nat_cfg cfg;
	struct berth_endpoint *src, *dst;
	struct berth_ct_entry *e;
	struct berth_net *net;
	struct berth_ip_key dkey;
	struct berth_cursor c;
	struct berth_l4 p;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct berth_fwd fwd;
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	__u32 reason = 0;
	__u16 frag_off;
	__u8 ttl;
	int bad, hop;

	berth_cursor_init_skb(&c, skb);
	eth = berth_parse_eth(&c);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return veth_pass(ifindex, len); /* ARP */
	if (!berth_eth_is_unicast(eth))
		return veth_ingress4_group(skb); /* broadcast, multicast */
	/* A malformed IPv4 header is passed: the bridge and the receiving kernel
	 * treat it exactly as they would without berth. */
	iph = berth_parse_ipv4(&c);
	if (!iph)
		return veth_pass(ifindex, len);
	src = bpf_map_lookup_elem(&berth_ep_by_ifindex, &skey);
	if (!src || !berth_fast_path)
		return veth_pass(ifindex, len);
	if (src->flags & BERTH_EP_NO_IPV4)
		return veth_drop(skb, ifindex, BERTH_DROP_NO_IPV6, len); /* an IPv6-only network */
	berth_parse_l4(&c, (void *)(long)skb->data, iph, &p);
	ttl = iph->ttl;
	frag_off = bpf_ntohs(iph->frag_off);

	/* 0. the container speaks only for itself */
	reason = berth_source_check(src, &p);
	if (reason)
		return veth_drop(skb, ifindex, reason, len);

	/* 1. tracked flows (a later fragment: by the ports its first recorded, or
	 * by its own tuple for a protocol without ports) */
	if (berth_l4_tracked(&p) || berth_frag_ports_of(skb, &p)) {
		e = berth_ct_lookup(&p);
		/* leaving the host (masquerade, routed, a published flow's reply):
		 * the user's egress rules (lib/egress_policy.h) */
		if (e && !(e->flags & BERTH_CT_HAIRPIN) && berth_egress_policy4(&p, len))
			return veth_drop(skb, ifindex, BERTH_DROP_POLICY, len);
		if (e && (e->flags & BERTH_CT_ROUTED)) {
			/* a routed flow: tracked, never translated */
			if (p.frag != BERTH_FRAG_LATER) {
				reason = berth_ct_seen(e, &p, len);
				if (reason)
					return veth_drop(skb, ifindex, reason, len);
			}
			return veth_pass(ifindex, len);
		}
		if (e) {
			/* source only: masquerade, a published flow's reply (a hairpin
			 * reply would reach its client untranslated: never passed) */
			int src_only = !(e->flags & BERTH_CT_HAIRPIN) && berth_addr4(e->rewrite.daddr) == p.daddr;

			hop = berth_hop_check(skb, ttl, frag_off, e->out_ifindex, src_only, p.saddr, p.daddr, src->network_id, &reason);
			if (hop == BERTH_HOP_KERNEL)
				return veth_pass(ifindex, len); /* the kernel answers the container */
			if (hop != BERTH_HOP_SEND)
				return veth_drop(skb, ifindex, reason, len);
			if (p.frag == BERTH_FRAG_LATER) {
				berth_frag_seen(e, len);
			} else {
				reason = berth_ct_seen(e, &p, len);
				if (reason)
					return veth_drop(skb, ifindex, reason, len);
			}
			return veth_ct_out(skb, &p, e, ifindex, len);
		}
	} else if (p.proto == IPPROTO_ICMP) {
		e = berth_nat_icmp_error(skb, &p, &bad);
		if (bad)
			return veth_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
		if (e) {
			berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
			if (e->count_ifindex)
				berth_count(e->count_ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
			return berth_ct_redirect(skb, e);
		}
	}

	/* 2. another local container */
	dkey.addr = p.daddr;
	dst = bpf_map_lookup_elem(&berth_ep_by_ip, &dkey);
	if (dst) {
		if (dst->ifindex == ifindex)
			return veth_pass(ifindex, len);
		berth_forward_between(src, dst, eth, &fwd);
		if (fwd.verdict == BERTH_VERDICT_DROP)
			return veth_drop(skb, ifindex, fwd.reason, len);
		/* Same L2 segment: the frame keeps its source MAC; the destination
		 * MAC is the container's own, whatever the sender had resolved. */
		__builtin_memcpy(eth->h_dest, dst->mac, ETH_ALEN);
		/* The redirect skips the destination veth's own hooks: count it there. */
		berth_count(ifindex, BERTH_DIR_FROM_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
		berth_count(dst->ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
		return bpf_redirect_peer(dst->ifindex, 0);
	}

	nkey.network_id = src->network_id;
	net = bpf_map_lookup_elem(&berth_net, &nkey);

	/* 3. the host: hairpin through a published port, else its own services */
	if (berth_is_host_addr(p.daddr) || (net && p.daddr == net->gateway)) {
		struct berth_publish_value *pub;
		struct berth_net *tnet;

		if (!p.has_ports || (p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP) || (src->flags & BERTH_EP_INTERNAL))
			return veth_pass(ifindex, len);
		pub = berth_publish_find(p.daddr, p.dport, p.proto);
		if (!pub)
			return veth_pass(ifindex, len);
		/* the destination is translated: TTL and the target's MTU */
		if (berth_hop_check(skb, ttl, frag_off, pub->ifindex, 0, 0, 0, 0, &reason) != BERTH_HOP_SEND)
			return veth_drop(skb, ifindex, reason, len);
		nkey.network_id = pub->network_id;
		tnet = bpf_map_lookup_elem(&berth_net, &nkey);
		if (!tnet)
			return veth_drop(skb, ifindex, BERTH_DROP_NO_ENDPOINT, len);
		if (!berth_ct_scratch(&orig, &reply))
			return veth_drop(skb, ifindex, BERTH_DROP_CT_FULL, len);

		berth_ct_key_of(&okey, &p);
		berth_addr_set4(orig->rewrite.saddr, tnet->gateway);
		berth_addr_copy(orig->rewrite.daddr, pub->addr);
		orig->rewrite.sport = p.sport;
		orig->rewrite.dport = pub->port;
		orig->rewrite.proto = p.proto;
		orig->rewrite.family = BERTH_AF_INET;
		__builtin_memset(orig->rewrite.pad, 0, sizeof(orig->rewrite.pad));
		berth_ct_set_out(orig, pub->ifindex, BERTH_OUT_PEER, pub->ifindex, tnet->gw_mac, pub->mac);
		berth_ct_reverse(&reply->rewrite, &okey);
		berth_ct_set_out(reply, ifindex, BERTH_OUT_PEER, ifindex, eth->h_dest, eth->h_source);
		berth_ct_init_pair(orig, reply, BERTH_CT_HAIRPIN, &p);
		/* Same network, another container: like Docker (whose bridged reply
		 * is un-NATed by br_netfilter) the target sees the client's own
		 * address; its reply still comes back through berth, since every
		 * packet a container sends meets this program. When that tuple is
		 * already tracked it falls back to the gateway with a free port, as
		 * for the rest. (A direct connection between the two containers is
		 * not tracked: a client using one source port both directly and
		 * through the published port at once would clash at the target.) */
		if (pub->network_id == src->network_id && p.saddr != berth_addr4(pub->addr)) {
			struct berth_ct_key rkey;
			int ret;

			berth_addr_set4(orig->rewrite.saddr, p.saddr);
			berth_ct_reverse(&rkey, &orig->rewrite);
			ret = berth_ct_insert(&rkey, reply);
			if (ret == 0) {
				reason = 0;
				e = berth_ct_commit(&okey, orig, &rkey, &reason);
				if (!e)
					return veth_drop(skb, ifindex, reason, len);
				berth_ct_seen(e, &p, len);
				return veth_ct_out(skb, &p, e, ifindex, len);
			}
			if (ret != -EEXIST) {
				berth_stat_add(BERTH_STAT_CT_FULL, 1);
				return veth_drop(skb, ifindex, BERTH_DROP_CT_FULL, len);
			}
			berth_addr_set4(orig->rewrite.saddr, tnet->gateway);
		}
		nat_cfg(&cfg);
		e = berth_nat_create_snat(skb, &cfg, &okey, orig, reply, &reason);
		if (!e)
			return veth_drop(skb, ifindex, reason, len);
		berth_ct_seen(e, &p, len);
		return veth_ct_out(skb, &p, e, ifindex, len);
	}

	/* 4. own subnet; internal networks stay inside it */
	if (!net)
		return veth_pass(ifindex, len);
	if ((p.daddr & net->mask) == net->subnet) {
		reason = berth_icc_check(src, net, p.daddr);
		if (reason)
			return veth_drop(skb, ifindex, reason, len);
		return veth_pass(ifindex, len);
	}
	if (src->flags & BERTH_EP_INTERNAL)
		return veth_drop(skb, ifindex, BERTH_DROP_INTERNAL, len);
	/* leaving the host: the user's egress rules (lib/egress_policy.h) */
	if (berth_egress_policy4(&p, len))
		return veth_drop(skb, ifindex, BERTH_DROP_POLICY, len);

	/* 5. routed: tracked, untranslated; masquerade */
	if (src->flags & BERTH_EP_ROUTED) {
		reason = berth_routed_track(&p, src->addr, len);
		if (reason)
			return veth_drop(skb, ifindex, reason, len);
		return veth_pass(ifindex, len);
	}
	if (!(src->flags & BERTH_EP_MASQUERADE))
		return veth_pass(ifindex, len);
	/* a later fragment whose first berth has not translated (yet): it
	 * would leave with the container's address */
	if (p.frag == BERTH_FRAG_LATER)
		return veth_drop(skb, ifindex, BERTH_DROP_FRAG_ORPHAN, len);
	if (!berth_l4_tracked(&p)) {
		/* truncated TCP/UDP/ICMP echo, a DCCP/UDP-Lite header without room
		 * for its checksum: never leaves with a private source */
		if (p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP || berth_proto_pseudo_csum(p.proto) ||
		    (p.proto == IPPROTO_ICMP && berth_icmp_is_echo(p.icmp_type)))
			return veth_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
		return veth_pass(ifindex, len); /* ICMP other than echo: not translated */
	}
	if (iph->ttl <= 1)
		return veth_pass(ifindex, len); /* the kernel answers time exceeded */
	if (!berth_ct_scratch(&orig, &reply))
		return veth_drop(skb, ifindex, BERTH_DROP_CT_FULL, len);
	{
		struct bpf_fib_lookup fib = {};
		struct berth_ifindex_key ukey;
		struct berth_uplink *up;
		long rc;

		fib.family = AF_INET;
		fib.l4_protocol = p.proto;
		fib.sport = p.sport;
		fib.dport = p.dport;
		/* a GSO packet's segments are checked against the uplink below */
		fib.tot_len = skb->gso_size ? 0 : bpf_ntohs(iph->tot_len);
		fib.tos = iph->tos;
		fib.ipv4_src = p.saddr;
		fib.ipv4_dst = p.daddr;
		fib.ifindex = net->bridge_ifindex ? net->bridge_ifindex : ifindex;
		rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
		if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
			orig->out_kind = BERTH_OUT_MAC;
			__builtin_memcpy(orig->out_smac, fib.smac, ETH_ALEN);
			__builtin_memcpy(orig->out_dmac, fib.dmac, ETH_ALEN);
		} else if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
			orig->out_kind = BERTH_OUT_NEIGH;
			__builtin_memset(orig->out_smac, 0, ETH_ALEN);
			__builtin_memset(orig->out_dmac, 0, ETH_ALEN);
		} else if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && !(iph->frag_off & bpf_htons(0x4000))) {
			/* bigger than the uplink's MTU and fragmentable: the kernel would
			 * SNAT then fragment it; berth does not fragment */
			return veth_drop(skb, ifindex, BERTH_DROP_TOO_BIG, len);
		} else {
			/* unreachable, prohibited, forwarding off, DF and too big, local:
			 * the kernel's path decides and answers (ICMP back to the container) */
			return veth_pass(ifindex, len);
		}
		ukey.ifindex = fib.ifindex;
		up = bpf_map_lookup_elem(&berth_uplink, &ukey);
		if (!up)
			return veth_drop(skb, ifindex, BERTH_DROP_NO_UPLINK, len);
		if (skb->gso_size) {
			hop = berth_hop_check(skb, ttl, frag_off, fib.ifindex, 1, p.saddr, p.daddr, src->network_id, &reason);
			if (hop == BERTH_HOP_KERNEL)
				return veth_pass(ifindex, len);
			if (hop != BERTH_HOP_SEND)
				return veth_drop(skb, ifindex, reason, len);
		}

		berth_ct_key_of(&okey, &p);
		orig->rewrite = okey;
		berth_addr_set4(orig->rewrite.saddr, up->addr);
		orig->out_ifindex = fib.ifindex;
		orig->count_ifindex = fib.ifindex;

		berth_ct_reverse(&reply->rewrite, &okey);
		berth_ct_set_out(reply, ifindex, BERTH_OUT_PEER, ifindex, net->gw_mac, src->mac);
		berth_ct_init_pair(orig, reply, BERTH_CT_MASQ, &p);
	}
	if (p.generic) {
		/* no port to choose: the tuple is taken or not (lib/generic.h) */
		e = berth_nat_create_generic(&okey, orig, reply, &reason);
	} else {
		nat_cfg(&cfg);
		e = berth_nat_create_snat(skb, &cfg, &okey, orig, reply, &reason);
	}
	if (!e)
		return veth_drop(skb, ifindex, reason, len);
	berth_ct_seen(e, &p, len);
	return veth_ct_out(skb, &p, e, ifindex, len);
}

/* Each family its own path, each with the whole BPF stack to itself. */
SEC("tc")
int berth_veth_ingress(struct __sk_buff *skb)
{
	struct ethhdr *eth = (void *)(long)skb->data;

	if ((void *)(eth + 1) <= (void *)(long)skb->data_end && eth->h_proto == bpf_htons(ETH_P_IPV6))
		return veth_ingress6(skb);
	return veth_ingress4(skb);
}

/*
 * What the kernel delivers to the container: the bridge's traffic (another
 * port of the bridge, or the bridge itself for the host and routed traffic,
 * which the bridge's own berth_br_out has checked). berth's redirects skip
 * this hook and are counted where they are made. Checked here: icc, for a
 * sender of the network that berth has not programmed.
 */
/* IPv6 the kernel delivers to a container: icc, for a sender of the network
 * berth has not programmed (lib/guard6.h berth_icc_check6). */
static __noinline int veth_egress6(struct __sk_buff *skb)
{
	struct berth_ifindex_key key = { .ifindex = skb->ifindex };
	struct berth_network_key nkey;
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	struct berth_endpoint *ep;
	struct berth_net *net;
	struct ipv6hdr *ip6h;
	struct berth_cursor c;
	__be32 saddr[4];
	__u32 reason;

	ep = bpf_map_lookup_elem(&berth_ep_by_ifindex, &key);
	if (!ep || (ep->flags & BERTH_EP_ICC))
		goto pass;
	berth_cursor_init_skb(&c, skb);
	if (!berth_parse_eth(&c))
		goto pass;
	ip6h = berth_parse_ipv6(&c);
	if (!ip6h)
		goto pass; /* the container's kernel drops it */
	if (berth_ip6_is_link_scope(ip6h->daddr.in6_u.u6_addr8))
		goto pass; /* NDP, MLD and the link's own traffic */
	if (ip6h->nexthdr == BERTH_NH_ICMP && ip6h->hop_limit == 255 && c.pos + 1 <= c.end &&
	    berth_icmp6_is_ndp(*(__u8 *)c.pos))
		goto pass; /* unicast neighbour discovery (hop limit 255: from the link itself) */
	__builtin_memcpy(saddr, &ip6h->saddr, 16);
	nkey.network_id = ep->network_id;
	net = bpf_map_lookup_elem(&berth_net, &nkey);
	reason = berth_icc_check6(ep, net, saddr);
	if (reason) {
		berth_count(ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_DROP, reason, len);
		berth_emit_drop_skb(skb, ifindex, BERTH_DIR_TO_CONTAINER, reason, len);
		return TC_ACT_SHOT;
	}
pass:
	berth_count(ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_PASS, 0, len);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int berth_veth_egress(struct __sk_buff *skb)
{
	struct berth_ifindex_key key = { .ifindex = skb->ifindex };
	struct berth_network_key nkey;
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	struct berth_endpoint *ep;
	struct berth_net *net;
	struct berth_cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	__u32 reason;

	berth_cursor_init_skb(&c, skb);
	eth = berth_parse_eth(&c);
	if (berth_fast_path && eth && eth->h_proto == bpf_htons(ETH_P_IPV6))
		return veth_egress6(skb);
	if (!berth_fast_path || !eth || eth->h_proto != bpf_htons(ETH_P_IP) || !berth_eth_is_unicast(eth))
		goto pass;
	iph = berth_parse_ipv4(&c);
	if (!iph)
		goto pass;
	ep = bpf_map_lookup_elem(&berth_ep_by_ifindex, &key);
	if (!ep || (ep->flags & BERTH_EP_ICC))
		goto pass; /* icc on: nothing to check (the common case costs one lookup) */
	nkey.network_id = ep->network_id;
	net = bpf_map_lookup_elem(&berth_net, &nkey);
	reason = berth_icc_check(ep, net, iph->saddr);
	if (reason) {
		berth_count(ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_DROP, reason, len);
		berth_emit_drop_skb(skb, ifindex, BERTH_DIR_TO_CONTAINER, reason, len);
		return TC_ACT_SHOT;
	}
pass:
	berth_count(ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_PASS, 0, len);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
