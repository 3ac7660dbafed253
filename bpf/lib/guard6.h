/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The choke points for IPv6 (issue 12), as lib/guard.h has them for IPv4:
 * who may speak for a container, who may enter a network, and icc. Pure
 * decisions over the IPv6 summary (struct berth_l6, lib/ipv6.h) and the
 * maps; each returns a drop reason, or BERTH_DROP_NONE.
 *
 * What the kernel needs on the link passes everywhere: link-local traffic
 * (fe80::/10 and multicast of link scope), neighbour discovery (hop limit
 * 255: RFC 4861, lib/ipv6.h berth_l6_is_ndp) and multicast listener
 * discovery (hop limit 1). The unspecified source :: is only ever NDP's (DAD)
 * or MLD's: anything else from :: is SPOOFED. An NDP-looking message with
 * another hop limit is not NDP (the receiver refuses it): it is judged as
 * routable traffic.
 *
 * A network without IPv6 (no BERTH_EP_IPV6) gets and sends nothing but that
 * link traffic: anything routable is NO_IPV6. Docker 29 gives such a network
 * no IPv6 address and no ip6tables rule, so its containers' IPv6 never
 * reaches anything but the link; berth keeps it so even when a container
 * gives itself an address.
 */
#ifndef BERTH_LIB_GUARD6_H
#define BERTH_LIB_GUARD6_H

#include "kernel.h"
#include "lib/maps.h"
#include "lib/addr.h"
#include "lib/ipv6.h"
#include "lib/publish.h"

/* struct berth_l6 keeps its addresses as bytes, 4-aligned (offsets 0 and 16) */
#define BERTH_L6_SADDR(p) ((const __be32 *)(p)->saddr)
#define BERTH_L6_DADDR(p) ((const __be32 *)(p)->daddr)

static __always_inline struct berth_endpoint *berth_ep6_lookup(const __be32 *a)
{
	struct berth_ip6_key k;

	berth_addr_copy(k.addr, a);
	return bpf_map_lookup_elem(&berth_ep_by_ip6, &k);
}

/* NDP or MLD as the receiver accepts them (lib/ipv6.h). */
static __always_inline int berth_l6_is_link_ctl(const struct berth_l6 *p)
{
	return berth_l6_is_ndp(p) || berth_l6_is_mld(p);
}

/* Traffic that never leaves the link: NDP, MLD, or link-local source to a
 * link-scope destination. */
static __always_inline int berth_l6_link_only(const struct berth_l6 *p)
{
	if (berth_l6_is_link_ctl(p))
		return 1;
	return berth_ip6_is_linklocal(p->saddr) && berth_ip6_is_link_scope(p->daddr);
}

/*
 * What a programmed container sends over IPv6 (its host veth's ingress).
 * A network without IPv6: link traffic only (NO_IPV6). With IPv6: the source
 * is the container's own addr6, a link-local address (the kernel's own for
 * NDP; link-local never leaves the link), or :: for NDP/MLD; SPOOFED otherwise.
 */
static __always_inline __u32 berth_source_check6(const struct berth_endpoint *src, const struct berth_l6 *p)
{
	if (berth_ip6_is_unspecified(p->saddr))
		return berth_l6_is_link_ctl(p) ? BERTH_DROP_NONE : BERTH_DROP_SPOOFED;
	if (!(src->flags & BERTH_EP_IPV6))
		return berth_l6_link_only(p) ? BERTH_DROP_NONE : BERTH_DROP_NO_IPV6;
	if (berth_ip6_is_linklocal(p->saddr) || berth_addr_eq(BERTH_L6_SADDR(p), src->addr6))
		return BERTH_DROP_NONE;
	return BERTH_DROP_SPOOFED;
}

/* The destination lies in the network's IPv6 subnet. */
static __always_inline int berth_in_subnet6(const struct berth_net *net, const __be32 *a)
{
	return net && (net->flags & BERTH_EP_IPV6) && berth_addr_in(a, net->subnet6, net->mask6);
}

/*
 * icc over IPv6, for the traffic the bridge carries (lib/guard.h
 * berth_icc_check): `peer` is the other side's address. Link-local peers are
 * not judged (NDP with the gateway and between neighbours needs them; they
 * cannot be told apart from the bridge's own).
 */
static __always_inline __u32 berth_icc_check6(const struct berth_endpoint *ep, const struct berth_net *net,
					      const __be32 *peer)
{
	if (ep->flags & BERTH_EP_ICC)
		return BERTH_DROP_NONE;
	if (!berth_in_subnet6(net, peer) || berth_addr_eq(peer, net->gateway6) || berth_addr_eq(peer, ep->addr6))
		return BERTH_DROP_NONE;
	return BERTH_DROP_ICC;
}

/*
 * An IPv6 packet the network behind a bridge sends up to the host
 * (lib/guard.h berth_bridge_exit's rules): link traffic passes; the source
 * must be an endpoint berth programmed on this network; a container berth
 * does not know yet, with an address of the subnet, may reach the host's
 * own addresses and the gateway (UNKNOWN_SOURCE past them); a source outside
 * the subnet, or another network's endpoint, is SPOOFED; a network without
 * IPv6 sends none (NO_IPV6).
 */
static __always_inline __u32 berth_bridge_exit6(const struct berth_bridge *br, const struct berth_net *net,
						const struct berth_l6 *p)
{
	struct berth_endpoint *ep;

	if (berth_ip6_is_unspecified(p->saddr))
		return berth_l6_is_link_ctl(p) ? BERTH_DROP_NONE : BERTH_DROP_SPOOFED;
	if (berth_l6_link_only(p))
		return BERTH_DROP_NONE;
	if (!(br->flags & BERTH_EP_IPV6))
		return BERTH_DROP_NO_IPV6;
	if (berth_ip6_is_linklocal(p->saddr))
		return BERTH_DROP_NONE; /* link-local source: the kernel never forwards it off the link */
	ep = berth_ep6_lookup(BERTH_L6_SADDR(p));
	if (ep && ep->network_id == br->network_id)
		return BERTH_DROP_NONE;
	if (ep || !berth_in_subnet6(net, BERTH_L6_SADDR(p)))
		return BERTH_DROP_SPOOFED;
	if (berth_is_host_addr6(BERTH_L6_DADDR(p)) || berth_addr_eq(BERTH_L6_DADDR(p), net->gateway6))
		return BERTH_DROP_NONE;
	return BERTH_DROP_UNKNOWN_SOURCE;
}

/* ::1, on an address as in the packet */
static __always_inline int berth_addr_is_loopback6(const __be32 *a)
{
	return (a[0] | a[1] | a[2]) == 0 && a[3] == bpf_htonl(1);
}

/*
 * A container's IPv6 packet to ::1 (any protocol): the parser calls it
 * malformed (ip6_rcv_core drops ::1 arriving on any interface but lo, as it
 * does under Docker 29's rules), and a malformed packet is passed for the
 * receiving kernel to drop, uncounted. For ::1 berth counts the drop itself
 * (LOOPBACK_ONLY), as berth_uplink_refuse6 does from outside. Reads the
 * fixed header's destination from the frame (the caller's parse failed, so
 * *p is not to be trusted); the container's own [::1] never leaves its
 * namespace, so nothing legitimate is lost.
 */
static __always_inline __u32 berth_container_refuse6(struct __sk_buff *skb)
{
	__be32 d[4];

	/* Ethernet (14) + the fixed header's offset of daddr (24) */
	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr) + offsetof(struct ipv6hdr, daddr), d, sizeof(d)) < 0)
		return BERTH_DROP_NONE;
	if (berth_addr_is_loopback6(d))
		return BERTH_DROP_LOOPBACK_ONLY;
	return BERTH_DROP_NONE;
}

/*
 * What arrives on a served interface over IPv6 and must never get in
 * (shared with XDP; lib/publish.h berth_uplink_refuse for IPv4): ::1 from
 * outside (LOOPBACK_ONLY: the kernel drops it as a martian too; counted),
 * any container's IPv6 address (NOT_PUBLISHED: Docker 29's raw
 * `-d C6 ! -i br -j DROP`; published ports are reached through a host
 * address), except a routed-v6 network's container (BERTH_EP_ROUTED6:
 * Docker 29 has no raw rule for it), whose bridge decides (lib/routed6.h).
 * BERTH_EP_ROUTED, gateway_mode_ipv4's, exempts nothing here.
 */
static __always_inline __u32 berth_uplink_refuse6(const __be32 *daddr)
{
	struct berth_endpoint *ep;

	if (berth_addr_is_loopback6(daddr))
		return BERTH_DROP_LOOPBACK_ONLY;
	ep = berth_ep6_lookup(daddr);
	if (ep && !(ep->flags & BERTH_EP_ROUTED6))
		return BERTH_DROP_NOT_PUBLISHED;
	return BERTH_DROP_NONE;
}

/*
 * Parse an IPv6 frame from the start (Ethernet, the fixed header, the
 * extension headers) into *p; a header past the linear data is pulled in
 * once (bpf_skb_pull_data) and parsed again. Returns an enum berth_v6_status.
 * Packet pointers are invalid after the call when it pulled: the caller
 * re-reads skb->data.
 */
static __always_inline int berth_l6_parse_skb(struct __sk_buff *skb, struct berth_l6 *p)
{
	struct berth_cursor c;
	struct ipv6hdr *ip6h;
	__u32 why = BERTH_V6_MALFORMED;

	berth_cursor_init_skb(&c, skb);
	if (!berth_parse_eth(&c))
		return BERTH_V6_MALFORMED;
	ip6h = berth_parse_ipv6_why(&c, &why);
	if (!ip6h)
		return why;
	return berth_parse_l6(&c, c.start, ip6h, p);
}

static __always_inline int berth_l6_load(struct __sk_buff *skb, struct berth_l6 *p)
{
	int st = berth_l6_parse_skb(skb, p);

	if (st != BERTH_V6_NONLINEAR)
		return st;
	if (bpf_skb_pull_data(skb, skb->len > 1024 ? 1024 : skb->len))
		return BERTH_V6_NONLINEAR;
	return berth_l6_parse_skb(skb, p);
}

#endif
