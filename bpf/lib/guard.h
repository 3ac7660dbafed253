/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The choke points: who may enter a network, and who may speak for a
 * container. Pure decisions over the packet summary (lib/l4.h) and the maps;
 * each returns a drop reason, or BERTH_DROP_NONE to let the packet go on.
 *
 * Where they run:
 *   - berth_source_check:  every IPv4 packet a programmed container sends
 *                          (its host veth's ingress), before anything else;
 *   - berth_bridge_entry:  every packet the host sends into a network (the
 *                          bridge's egress), whatever interface it came in by;
 *   - berth_bridge_exit:   every IPv4 packet a network sends up to the host
 *                          (the bridge's ingress): catches the containers
 *                          berth has not programmed, whose veths carry no
 *                          program of berth's;
 *   - berth_icc_check:     container to container inside a network, for the
 *                          traffic the bridge carries (one side unknown).
 * berth's own translated flows never meet the bridge checks: they are
 * redirected straight into (or out of) the container.
 */
#ifndef BERTH_LIB_GUARD_H
#define BERTH_LIB_GUARD_H

#include "kernel.h"
#include "lib/maps.h"
#include "lib/l4.h"
#include "lib/publish.h"

#define BERTH_DHCP_CLIENT_PORT 68
#define BERTH_DHCP_SERVER_PORT 67

/* A DHCP client without an address yet: 0.0.0.0:68 -> :67 over UDP. */
static __always_inline int berth_is_dhcp_client(const struct berth_l4 *p)
{
	return p->saddr == 0 && p->proto == IPPROTO_UDP && p->has_ports &&
	       p->sport == bpf_htons(BERTH_DHCP_CLIENT_PORT) && p->dport == bpf_htons(BERTH_DHCP_SERVER_PORT);
}

/* A programmed container speaks only with its own address (DHCP aside). */
static __always_inline __u32 berth_source_check(const struct berth_endpoint *src, const struct berth_l4 *p)
{
	if (p->saddr == src->addr || berth_is_dhcp_client(p))
		return BERTH_DROP_NONE;
	return BERTH_DROP_SPOOFED;
}

/*
 * A packet leaving the host into the network behind bridge br_ifindex. iif
 * is the interface it came in by (skb->ingress_ifindex): 0 when the host
 * itself sent it (Docker leaves the host's own traffic alone), the bridge
 * itself when the network's own traffic was routed back into it. Anything
 * forwarded from elsewhere is refused, as Docker 29's
 * `-o br ! -i br -j DROP` and raw `-d C ! -i br -j DROP` do: from another
 * network of berth's it is isolation, from anywhere else not published.
 */
static __always_inline __u32 berth_bridge_entry(__u32 br_ifindex, __u32 iif)
{
	struct berth_ifindex_key k = { .ifindex = iif };

	if (iif == 0 || iif == br_ifindex)
		return BERTH_DROP_NONE;
	if (bpf_map_lookup_elem(&berth_bridge, &k))
		return BERTH_DROP_ISOLATION;
	return BERTH_DROP_NOT_PUBLISHED;
}

/* IPv6 destinations that never leave the link: link-local fe80::/10, multicast ff00::/8. */
static __always_inline int berth_ipv6_link_scope(const struct ipv6hdr *ip6)
{
	__u8 b0 = ip6->daddr.in6_u.u6_addr8[0];
	__u8 b1 = ip6->daddr.in6_u.u6_addr8[1];

	return b0 == 0xff || (b0 == 0xfe && (b1 & 0xc0) == 0x80);
}

/*
 * An IPv4 packet the network behind a bridge sends up to the host. Its source
 * must be an endpoint berth programmed on this network (whose own veth
 * checked it), or a DHCP client. A container berth does not know yet may
 * still reach the host's own addresses with an address of its subnet (as
 * with Docker, whose rules leave INPUT alone); it may not leave the host, as
 * berth could not masquerade it: UNKNOWN_SOURCE. A source outside the subnet
 * is SPOOFED.
 */
static __always_inline __u32 berth_bridge_exit(const struct berth_bridge *br, const struct berth_net *net,
					       const struct berth_l4 *p)
{
	struct berth_ip_key k = { .addr = p->saddr };
	struct berth_endpoint *ep;

	if (berth_is_dhcp_client(p))
		return BERTH_DROP_NONE;
	ep = bpf_map_lookup_elem(&berth_ep_by_ip, &k);
	if (ep && ep->network_id == br->network_id)
		return BERTH_DROP_NONE;
	if (!net || (p->saddr & net->mask) != net->subnet || ep)
		return BERTH_DROP_SPOOFED;
	if (berth_is_host_addr(p->daddr) || p->daddr == net->gateway)
		return BERTH_DROP_NONE;
	return BERTH_DROP_UNKNOWN_SOURCE;
}

/*
 * Container to container inside one network, for the traffic the bridge
 * carries: `ep` is the programmed side, `peer` the other address, which lies
 * in the network's subnet. Docker's icc=false is `-i br -o br -j DROP`:
 * nothing between two containers, the gateway aside.
 */
static __always_inline __u32 berth_icc_check(const struct berth_endpoint *ep, const struct berth_net *net, __be32 peer)
{
	if (ep->flags & BERTH_EP_ICC)
		return BERTH_DROP_NONE;
	if (!net || (peer & net->mask) != net->subnet || peer == net->gateway || peer == ep->addr)
		return BERTH_DROP_NONE;
	return BERTH_DROP_ICC;
}

#endif
