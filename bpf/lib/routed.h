/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Routed networks (Docker's gateway_mode_ipv4=routed, flag BERTH_EP_ROUTED
 * on the network's endpoints, net and bridge): no NAT at all. Outside hosts
 * reach the containers on their own addresses, exactly where Docker 29's
 * rules let them (moby's bridge driver, iptabler):
 *
 *   filter DOCKER     -d C ! -i br -o br -p P --dport CP -j ACCEPT   (per published port)
 *                     -o br -p icmp -j ACCEPT                        (routed only)
 *                     ! -i br -o br -j DROP
 *   filter DOCKER-CT  -o br -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
 *   raw PREROUTING    no `-d C ! -i br -j DROP` for a routed network's endpoints
 *   nat               no MASQUERADE for the subnet; the host port of `-p HP:CP` is
 *                     ignored (the routed port mapper clears it): no DNAT, nothing
 *                     on the host's addresses, and `127.0.0.1:` opens CP all the same.
 *
 * berth's share, in three places:
 *   - berth_routed_entry: the bridge's egress (the network's choke point), for
 *     a packet berth_bridge_entry refuses as NOT_PUBLISHED (forwarded in from
 *     an interface that is not a network of berth's). On a routed bridge it
 *     lets in ICMP, TCP/UDP to a published container port (a BERTH_PUB_ROUTED
 *     entry of berth_publish: container address, container port, proto, of
 *     this network), and the replies of flows a container opened (a
 *     BERTH_CT_ROUTED reply half; conntrack may still refuse one: an RST out
 *     of window is CT_INVALID). Before all of these, as DOCKER-USER comes
 *     first in Docker's FORWARD chain, every packet meets the user's policy
 *     on its own header (lib/routed_policy.h; deny: POLICY), so a deny cuts
 *     a live flow at its next packet. The rest stays NOT_PUBLISHED; a fragment of
 *     TCP/UDP is FRAGMENT (berth does not reassemble, so it cannot see the
 *     ports of the ones that follow).
 *   - berth_routed_track: the container veth's ingress, for a TCP/UDP packet
 *     a routed container sends out of its subnet: a new flow is recorded
 *     with an identity rewrite (both halves BERTH_CT_ROUTED) and the packet
 *     goes to the kernel untranslated. A reply from a published port is not
 *     recorded (whoever it answers reaches that port anyway). The table
 *     full: CT_FULL, as the kernel's conntrack drops a new flow then.
 *   - BERTH_CT_ROUTED entries are never translated nor redirected: a packet
 *     that hits one is passed to the kernel (veth and uplink ingress), and an
 *     ICMP error quoting one is left alone (lib/nat.h); the bridge's egress
 *     does the accounting of the replies.
 * What the served interfaces refuse (berth_uplink_refuse) lets the packets
 * to a routed container through, for the bridge to decide. The flows live in
 * the pinned berth_ct, so all of this holds while the daemon is down.
 */
#ifndef BERTH_LIB_ROUTED_H
#define BERTH_LIB_ROUTED_H

#include "kernel.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/l4.h"
#include "lib/conntrack.h"
#include "lib/publish.h"
#include "lib/routed_policy.h"

/* A published container port of a routed network (network_id 0: any). */
static __always_inline int berth_routed_port(__be32 addr, __be16 port, __u8 proto, __u32 network_id)
{
	struct berth_publish_value *v = berth_publish_lookup(addr, port, proto);

	return v && (v->flags & BERTH_PUB_ROUTED) && (!network_id || v->network_id == network_id);
}

/*
 * The bridge br_ifindex's egress, c just past the Ethernet header of an IPv4
 * frame that berth_bridge_entry refused as NOT_PUBLISHED. Returns the drop
 * reason, or BERTH_DROP_NONE to let it into the network.
 */
static __always_inline __u32 berth_routed_entry(struct __sk_buff *skb, struct berth_cursor *c, __u32 br_ifindex)
{
	struct berth_ifindex_key bk = { .ifindex = br_ifindex };
	struct berth_ct_entry *e;
	struct berth_bridge *br;
	struct iphdr *iph;
	struct berth_l4 p;

	br = bpf_map_lookup_elem(&berth_bridge, &bk);
	if (!br || !(br->flags & BERTH_EP_ROUTED))
		return BERTH_DROP_NOT_PUBLISHED;
	iph = berth_parse_ipv4(c);
	if (!iph)
		return BERTH_DROP_NOT_PUBLISHED;
	berth_parse_l4(c, (void *)(long)skb->data, iph, &p);
	/* DOCKER-USER comes first (lib/routed_policy.h) */
	if (berth_routed_policy4(&p, skb->len))
		return BERTH_DROP_POLICY;
	if (p.proto == IPPROTO_ICMP)
		return BERTH_DROP_NONE;
	if (p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP)
		return BERTH_DROP_NOT_PUBLISHED;
	if (p.frag != BERTH_FRAG_NONE)
		return BERTH_DROP_FRAGMENT;
	if (!p.has_ports)
		return BERTH_DROP_NOT_PUBLISHED; /* truncated */
	if (berth_routed_port(p.daddr, p.dport, p.proto, br->network_id))
		return BERTH_DROP_NONE;
	e = berth_ct_lookup(&p);
	if (e && (e->flags & (BERTH_CT_ROUTED | BERTH_CT_REPLY)) == (BERTH_CT_ROUTED | BERTH_CT_REPLY))
		return berth_ct_seen(e, &p, skb->len);
	return BERTH_DROP_NOT_PUBLISHED;
}

/*
 * A routed container's new TCP/UDP flow out, of either family (okey: its
 * tuple as it leaves): conntrack halves that rewrite nothing
 * (BERTH_CT_ROUTED), so that the flow's replies get in, then the packet
 * counted on it. Returns BERTH_DROP_NONE or a drop reason.
 */
static __always_inline __u32 berth_routed_new_flow(const struct berth_ct_key *okey, const struct berth_l4 *l4, __u32 len)
{
	struct berth_ct_entry *orig, *reply, *e;
	struct berth_ct_key rkey;
	__u32 reason = 0;
	int ret;

	if (!berth_ct_scratch(&orig, &reply))
		return BERTH_DROP_CT_FULL;
	berth_ct_reverse(&rkey, okey);
	orig->rewrite = *okey;
	reply->rewrite = rkey;
	orig->out_ifindex = 0;
	orig->out_kind = BERTH_OUT_PEER;
	orig->count_ifindex = 0;
	__builtin_memset(orig->out_smac, 0, ETH_ALEN);
	__builtin_memset(orig->out_dmac, 0, ETH_ALEN);
	reply->out_ifindex = 0;
	reply->out_kind = BERTH_OUT_PEER;
	reply->count_ifindex = 0;
	__builtin_memset(reply->out_smac, 0, ETH_ALEN);
	__builtin_memset(reply->out_dmac, 0, ETH_ALEN);
	berth_ct_init_pair(orig, reply, BERTH_CT_ROUTED, l4);
	ret = berth_ct_insert(&rkey, reply);
	if (ret == -EEXIST)
		return BERTH_DROP_NONE; /* another CPU is creating this flow: its halves let the replies in */
	if (ret < 0) {
		berth_stat_add(BERTH_STAT_CT_FULL, 1);
		return BERTH_DROP_CT_FULL;
	}
	e = berth_ct_commit(okey, orig, &rkey, &reason);
	if (!e)
		return reason;
	return berth_ct_seen(e, l4, len);
}

/*
 * A packet p the routed container with address `own` sends out of its subnet
 * (its veth's ingress), not of a tracked flow. Returns BERTH_DROP_NONE (pass
 * it to the kernel, untranslated) or a drop reason. Only a flow from its own
 * address is recorded: a DHCP client's 0.0.0.0 is no tuple of its own, and
 * any other container could send on it.
 */
static __always_inline __u32 berth_routed_track(const struct berth_l4 *p, __be32 own, __u32 len)
{
	struct berth_ct_key okey;

	/* ICMP gets in anyway; other protocols and fragments are not tracked
	 * (their answers are refused at the bridge) */
	if (!p->has_ports || p->frag != BERTH_FRAG_NONE || (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP) || p->saddr != own)
		return BERTH_DROP_NONE;
	if (berth_routed_port(p->saddr, p->sport, p->proto, 0))
		return BERTH_DROP_NONE;
	berth_ct_key_of(&okey, p);
	return berth_routed_new_flow(&okey, p, len);
}

#endif
