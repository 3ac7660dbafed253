/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Routed IPv6 (Docker's gateway_mode_ipv6=routed, flag BERTH_EP_ROUTED6 on
 * the network's endpoints, net and bridge), as lib/routed.h is for IPv4 and
 * per family: a network may be nat for one family and routed for the other.
 * No NAT66; outside hosts reach the containers on their own addr6, exactly
 * where Docker 29's ip6tables rules let them (moby's iptabler, the IPv6
 * half of test/lib/reference6.ts):
 *
 *   filter DOCKER     -d C6 ! -i br -o br -p P --dport CP -j ACCEPT  (per published port)
 *                     -o br -p ipv6-icmp -j ACCEPT                   (routed only)
 *                     ! -i br -o br -j DROP
 *   filter DOCKER-CT  -o br -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
 *   raw PREROUTING    no `-d C6 ! -i br -j DROP` for a routed network's endpoints
 *   nat               no MASQUERADE for subnet6, no DNAT: the host port of a
 *                     publish is ignored (keyed BERTH_PUB_ROUTED on the
 *                     container's addr6 and port, as IPv4's)
 *
 * berth's share:
 *   - berth_uplink_refuse6 (lib/guard6.h, TC and XDP) lets a packet to a
 *     ROUTED6 endpoint's addr6 through, for the bridge to decide; the uplink
 *     passes a routed flow's packets to the kernel (lib/nat6_path.h), which
 *     forwards them (hop limit, routing) to the bridge.
 *   - berth_routed6_entry: the bridge's egress, for a routable packet
 *     berth_bridge_entry refuses as NOT_PUBLISHED (forwarded in from an
 *     interface that is not a network of berth's). On a ROUTED6 bridge it
 *     lets in ICMPv6, TCP/UDP to a published container port (a
 *     BERTH_PUB_ROUTED IPv6 entry of this network), and the replies of flows
 *     a container opened (a BERTH_CT_ROUTED reply half; conntrack may still
 *     refuse one: CT_INVALID). Before all of these (DOCKER-USER first),
 *     every packet meets the user's policy on its own header, the rules'
 *     IPv6 fields (lib/routed_policy.h; deny: POLICY). The rest stays
 *     NOT_PUBLISHED; a fragment of
 *     TCP/UDP is FRAGMENT (as IPv4's: berth does not reassemble); what the
 *     parser calls malformed or will not parse is NOT_PUBLISHED (it would
 *     enter a container unseen).
 *   - berth_routed6_track: the container veth's ingress, for a TCP/UDP
 *     packet a ROUTED6 container sends out of its subnet6 from its own addr6:
 *     a tracked routed flow is accounted, a new one recorded with an identity
 *     rewrite (both halves BERTH_CT_ROUTED), and the packet goes to the
 *     kernel untranslated. A reply from a published port is not recorded. The
 *     table full: CT_FULL.
 */
#ifndef BERTH_LIB_ROUTED6_H
#define BERTH_LIB_ROUTED6_H

#include "kernel.h"
#include "lib/maps.h"
#include "lib/addr.h"
#include "lib/ipv6.h"
#include "lib/conntrack.h"
#include "lib/routed.h" /* berth_routed_new_flow */
#include "lib/publish.h"
#include "lib/guard6.h"
#include "lib/nat6.h" /* berth_l6_buf, berth_ct_key6_of, berth_ct_lookup6 */
#include "lib/routed_policy.h"

/* A published container port of a routed-v6 network (network_id 0: any). */
static __always_inline int berth_routed6_port(const __u8 *addr, __be16 port, __u8 proto, __u32 network_id)
{
	struct berth_publish_value *v;
	__be32 a[4];

	__builtin_memcpy(a, addr, 16);
	v = berth_publish_lookup6(a, port, proto);
	return v && (v->flags & BERTH_PUB_ROUTED) && (!network_id || v->network_id == network_id);
}

/*
 * The bridge br_ifindex's egress, for an IPv6 frame that berth_bridge_entry
 * refused as NOT_PUBLISHED. Returns the drop reason, or BERTH_DROP_NONE to
 * let it into the network. Out of line, its summary in the per-CPU
 * berth_l6_scratch (the bridge's frames and conntrack's stay within the
 * 512-byte stack).
 */
static __noinline __attribute__((unused)) __u32 berth_routed6_entry(struct __sk_buff *skb, __u32 br_ifindex)
{
	struct berth_ifindex_key bk = { .ifindex = br_ifindex };
	struct berth_l6 *p = berth_l6_buf();
	struct berth_ct_entry *e;
	struct berth_bridge *br;

	if (!skb || !p)
		return BERTH_DROP_NOT_PUBLISHED;
	br = bpf_map_lookup_elem(&berth_bridge, &bk);
	if (!br || !(br->flags & BERTH_EP_ROUTED6))
		return BERTH_DROP_NOT_PUBLISHED;
	if (berth_l6_load(skb, p) != BERTH_V6_OK)
		return BERTH_DROP_NOT_PUBLISHED;
	/* DOCKER-USER comes first (lib/routed_policy.h) */
	if (berth_routed_policy6(p, skb->len))
		return BERTH_DROP_POLICY;
	if (p->l4.proto == BERTH_NH_ICMP)
		return BERTH_DROP_NONE; /* -o br -p ipv6-icmp -j ACCEPT */
	if (p->l4.proto != BERTH_NH_TCP && p->l4.proto != BERTH_NH_UDP)
		return BERTH_DROP_NOT_PUBLISHED;
	if (p->l4.frag != BERTH_FRAG_NONE)
		return BERTH_DROP_FRAGMENT;
	if (!p->l4.has_ports)
		return BERTH_DROP_NOT_PUBLISHED; /* truncated */
	if (berth_routed6_port(p->daddr, p->l4.dport, p->l4.proto, br->network_id))
		return BERTH_DROP_NONE;
	e = berth_ct_lookup6(p);
	if (e && (e->flags & (BERTH_CT_ROUTED | BERTH_CT_REPLY)) == (BERTH_CT_ROUTED | BERTH_CT_REPLY))
		return berth_ct_seen(e, &p->l4, skb->len);
	return BERTH_DROP_NOT_PUBLISHED;
}

/*
 * A packet p the ROUTED6 container src sends out of its subnet6 (its veth's
 * ingress, after the source check). Returns BERTH_DROP_NONE (pass it to the
 * kernel, untranslated) or a drop reason. ICMPv6 gets in anyway; other
 * protocols and fragments are not tracked (their answers are refused at the
 * bridge, as IPv4's).
 */
static __noinline __attribute__((unused)) __u32 berth_routed6_track(const struct berth_l6 *p, const struct berth_endpoint *src,
								    __u32 len)
{
	struct berth_ct_entry *e;
	struct berth_ct_key okey;

	if (!p || !src)
		return BERTH_DROP_NONE;
	if (!p->l4.has_ports || p->l4.frag != BERTH_FRAG_NONE || (p->l4.proto != BERTH_NH_TCP && p->l4.proto != BERTH_NH_UDP) ||
	    !berth_addr_eq(BERTH_L6_SADDR(p), src->addr6))
		return BERTH_DROP_NONE;
	berth_ct_key6_of(&okey, p);
	e = bpf_map_lookup_elem(&berth_ct, &okey);
	if (e && (e->flags & BERTH_CT_ROUTED))
		return berth_ct_seen(e, &p->l4, len);
	if (berth_routed6_port(p->saddr, p->l4.sport, p->l4.proto, 0))
		return BERTH_DROP_NONE; /* a published port's reply: whoever it answers reaches it anyway */
	return berth_routed_new_flow(&okey, &p->l4, len);
}

#endif
