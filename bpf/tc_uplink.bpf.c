// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Entry point on a served interface's ingress (tcx, or clsact as fallback):
 * what arrives at the host from outside, on an uplink or on any other
 * served interface (Docker's DNAT serves every interface; the uplinks are
 * only where masquerade leaves, see berth_uplink). Served interfaces are
 * Ethernet: the controller never attaches this to an L3 device (tun,
 * wireguard), whose IP header would be read as an Ethernet header. Counted
 * in berth_counters under the interface's ifindex with direction 0
 * (arriving); packets berth sends out of it are counted there with
 * direction 1 (leaving).
 *
 * In order (first match wins):
 *   - IPv6 (up_in6): headers past the linear data pulled first (lib/pull6.h;
 *     a failed pull: drop MALFORMED); to ::1 LOOPBACK_ONLY, to a container's IPv6 address
 *     NOT_PUBLISHED (lib/guard6.h), except a container of a routed-v6 network
 *     (gateway_mode_ipv6=routed): passed, as is a packet of a routed flow,
 *     for the bridge's choke point to decide (lib/routed6.h); else pass
 *     (NAT66 and v6 publishing: [v6nat]);
 *     a client's packet to a published v6 port, new or tracked, meets the
 *     user's policy as IPv4's does (lib/policy.h; deny: drop POLICY); too big
 *     for the container veth: drop TOO_BIG and an ICMPv6 Packet Too Big back
 *     to the client (lib/hop6.h);
 *   - not IPv4 / malformed IPv4: pass;
 *   - to 127.0.0.0/8: drop LOOPBACK_ONLY; to a container address: drop
 *     NOT_PUBLISHED (no direct routing to containers, published or not),
 *     except a container of a routed network: passed, as is a packet of a
 *     routed flow, for the bridge's choke point to decide (lib/routed.h);
 *   - a packet of a tracked flow (masquerade replies, published flows; the
 *     replies of masqueraded GRE, SCTP, ESP ... by addresses and protocol,
 *     lib/generic.h):
 *     translated and redirected as the entry says, a client's packet of a
 *     published flow after the user's policy (deny: drop POLICY), the reply
 *     of a masqueraded flow too, after de-NAT as Docker's DOCKER-USER sees it
 *     (lib/egress_policy.h; both families), unless
 *     conntrack refuses it (an RST out of the receiver's scaled window: drop
 *     CT_INVALID); an ICMP error quoting a tracked flow: translated back
 *     the same way;
 *   - to a host address, TCP/UDP on a published port (exact address, then
 *     any; LOOPBACK entries never): the user's policy first (deny: drop
 *     POLICY), then DNAT to the container, source kept, a new
 *     flow whose reply half goes back out of this interface to the sender's MAC;
 *   - everything else (host services, unknown ports, the host's own GRE or
 *     IPsec tunnels): pass.
 * Fragments (lib/frag.h): a first fragment is translated like a whole
 * datagram and records its ports; a later fragment finds them, then its
 * tracked half, and gets its addresses rewritten and is sent the same way.
 * A later fragment with no record (or no tracked flow) is passed: the host's
 * own reassembly, which discards it when it times out. A protocol tracked
 * without ports (GRE, SCTP, ...: lib/generic.h) needs no record: every
 * fragment carries its tuple.
 * TTL and MTU (lib/hop.h): every translation here changes the destination,
 * so TTL <= 1 is dropped (TTL_EXCEEDED: passed, it would reach a host
 * socket), and a packet bigger than the container veth's MTU (TOO_BIG), its
 * size the datagram's (tot_len), not bytes past it, which the kernel trims.
 */
#include "kernel.h"
#include "berth_contract.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/counters.h"
#include "lib/l4.h"
#include "lib/conntrack.h"
#include "lib/nat.h"
#include "lib/publish.h"
#include "lib/policy.h"
#include "lib/egress_policy.h"
#include "lib/events.h"
#include "lib/frag.h"
#include "lib/hop.h"
#include "lib/nat6_path.h"
#include "lib/guard6.h"
#include "lib/pull6.h"

#define BERTH_DIR_UPLINK_IN 0
#define BERTH_DIR_UPLINK_OUT 1

/* berth_fast_path = 0: count only, pass everything. */
const volatile __u8 berth_fast_path = 1;

const volatile struct berth_btf_anchor berth_btf_anchor;

static __always_inline int up_pass(__u32 ifindex, __u32 len)
{
	berth_count(ifindex, BERTH_DIR_UPLINK_IN, BERTH_VERDICT_PASS, 0, len);
	return TC_ACT_UNSPEC;
}

static __always_inline int up_drop(struct __sk_buff *skb, __u32 ifindex, __u32 reason, __u32 len)
{
	berth_count(ifindex, BERTH_DIR_UPLINK_IN, BERTH_VERDICT_DROP, reason, len);
	berth_emit_drop_skb(skb, ifindex, BERTH_DIR_UPLINK_IN, reason, len);
	return TC_ACT_SHOT;
}

static __always_inline int up_out(struct __sk_buff *skb, const struct berth_ct_entry *e, __u32 ifindex, __u32 len)
{
	berth_count(ifindex, BERTH_DIR_UPLINK_IN, BERTH_VERDICT_REDIRECT, 0, len);
	if (e->count_ifindex)
		berth_count(e->count_ifindex, BERTH_DIR_TO_CONTAINER, BERTH_VERDICT_REDIRECT, 0, len);
	return berth_ct_redirect(skb, e);
}

/*
 * IPv6 from outside: to ::1 LOOPBACK_ONLY, to a container's IPv6 address
 * NOT_PUBLISHED (lib/guard6.h berth_uplink_refuse6); the rest goes to the
 * kernel. NAT66 (lib/nat6_path.h): tracked flows (NAT66 replies, published flows) and the
 * published-port DNAT go after the refusals, as in berth_up_in.
 */
static __noinline int up_in6(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	struct ipv6hdr *ip6h;
	struct berth_cursor c;
	__be32 daddr[4];
	struct berth_l6 *p;
	__u32 reason;
	int ret, st;

	p = berth_l6_buf();
	if (!p)
		return up_pass(ifindex, len);
	/* headers past the linear data are pulled first (lib/pull6.h) */
	st = berth_l6_load_deep(skb, p);
	if (st == BERTH_V6_NONLINEAR)
		return up_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
	berth_cursor_init_skb(&c, skb);
	if (!berth_parse_eth(&c))
		return up_pass(ifindex, len);
	ip6h = c.pos;
	if ((void *)(ip6h + 1) > c.end)
		return up_pass(ifindex, len); /* the kernel drops a truncated header */
	__builtin_memcpy(daddr, &ip6h->daddr, 16);
	reason = berth_uplink_refuse6(daddr);
	if (reason)
		return up_drop(skb, ifindex, reason, len);
	/* tracked flows and published ports (lib/nat6_path.h) */
	if (st != BERTH_V6_OK)
		return up_pass(ifindex, len);
	ret = berth_v6nat_uplink(skb, p);
	if (ret != BERTH_V6NAT_NEXT)
		return ret;
	return up_pass(ifindex, len);
}

/* IPv4 and the rest (the program before IPv6: see the top). */
static __noinline int up_in4(struct __sk_buff *skb)
{
	struct berth_ct_entry *orig, *reply;
	struct berth_publish_value *pub;
	struct berth_network_key nkey;
	struct berth_ct_key okey, rkey;
	struct berth_ct_entry *e;
	struct berth_net *net;
	struct berth_cursor c;
	struct berth_l4 p;
	struct ethhdr *eth;
	struct iphdr *iph;
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	__u32 reason;
	__u16 frag_off;
	__u8 ttl;
	int bad, ret;

	berth_cursor_init_skb(&c, skb);
	eth = berth_parse_eth(&c);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return up_pass(ifindex, len);
	iph = berth_parse_ipv4(&c);
	if (!iph || !berth_fast_path)
		return up_pass(ifindex, len);
	reason = berth_uplink_refuse(iph->daddr);
	if (reason)
		return up_drop(skb, ifindex, reason, len);
	berth_parse_l4(&c, (void *)(long)skb->data, iph, &p);
	ttl = iph->ttl;
	frag_off = bpf_ntohs(iph->frag_off);

	if (berth_l4_tracked(&p) || berth_frag_ports_of(skb, &p)) {
		e = berth_ct_lookup(&p);
		if (e && (e->flags & BERTH_CT_ROUTED))
			return up_pass(ifindex, len); /* a routed flow's: the bridge's egress checks it */
		if (e) {
			if (berth_hop_check(skb, ttl, frag_off, e->out_ifindex, 0, 0, 0, 0, &reason) != BERTH_HOP_SEND)
				return up_drop(skb, ifindex, reason, len);
			/* the user's rules see every packet a client sends to a published
			 * port, so a deny cuts a live flow (its orig half: client -> host) */
			if ((e->flags & (BERTH_CT_PUBLISHED | BERTH_CT_REPLY)) == BERTH_CT_PUBLISHED &&
			    berth_policy_denies4(p.saddr, berth_addr4(e->rewrite.daddr), p.dport, p.proto, len))
				return up_drop(skb, ifindex, BERTH_DROP_POLICY, len);
			/* and every reply of a masqueraded flow, after de-NAT (lib/egress_policy.h) */
			if (berth_reply_policy4(&p, e, len))
				return up_drop(skb, ifindex, BERTH_DROP_POLICY, len);
			if (p.frag == BERTH_FRAG_LATER) {
				berth_frag_seen(e, len);
				if (berth_frag_apply(skb, &p, &e->rewrite) < 0)
					return up_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
				return up_out(skb, e, ifindex, len);
			}
			reason = berth_ct_seen(e, &p, len);
			if (reason)
				return up_drop(skb, ifindex, reason, len);
			berth_frag_record(skb, &p);
			if (berth_nat_apply(skb, &p, &e->rewrite, 1) < 0)
				return up_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
			return up_out(skb, e, ifindex, len);
		}
	} else if (p.proto == IPPROTO_ICMP) {
		e = berth_nat_icmp_error(skb, &p, &bad);
		if (bad)
			return up_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
		if (e)
			return up_out(skb, e, ifindex, len);
		return up_pass(ifindex, len);
	}

	if (!p.has_ports || (p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP) || !berth_is_host_addr(p.daddr))
		return up_pass(ifindex, len);
	pub = berth_publish_find(p.daddr, p.dport, p.proto);
	if (!pub)
		return up_pass(ifindex, len); /* the host's own services */
	/* ip_forward checks TTL and MTU before the FORWARD chain (DOCKER-USER) */
	if (berth_hop_check(skb, ttl, frag_off, pub->ifindex, 0, 0, 0, 0, &reason) != BERTH_HOP_SEND)
		return up_drop(skb, ifindex, reason, len);
	/* the user's rules (DOCKER-USER) come before berth's own verdicts */
	if (berth_policy_denies4(p.saddr, berth_addr4(pub->addr), p.dport, p.proto, len))
		return up_drop(skb, ifindex, BERTH_DROP_POLICY, len);
	nkey.network_id = pub->network_id;
	net = bpf_map_lookup_elem(&berth_net, &nkey);
	if (!net)
		return up_drop(skb, ifindex, BERTH_DROP_NO_ENDPOINT, len);

	if (!berth_ct_scratch(&orig, &reply))
		return up_drop(skb, ifindex, BERTH_DROP_CT_FULL, len);
	/* orig half: client -> container, source kept */
	berth_ct_key_of(&okey, &p);
	orig->rewrite = okey;
	berth_addr_copy(orig->rewrite.daddr, pub->addr);
	orig->rewrite.dport = pub->port;
	berth_ct_set_out(orig, pub->ifindex, BERTH_OUT_PEER, pub->ifindex, net->gw_mac, pub->mac);
	/* reply half: container -> client, back out of this interface to the
	 * hop the request came from (any Ethernet interface: no uplink needed) */
	berth_ct_reverse(&reply->rewrite, &okey);
	berth_ct_set_out(reply, ifindex, BERTH_OUT_MAC, ifindex, eth->h_dest, eth->h_source);
	berth_ct_init_pair(orig, reply, BERTH_CT_PUBLISHED, &p);
	berth_ct_reverse(&rkey, &orig->rewrite);
	ret = berth_ct_insert(&rkey, reply);
	if (ret == -EEXIST) /* the container already has a flow with that tuple */
		return up_drop(skb, ifindex, BERTH_DROP_NAT_NO_PORT, len);
	if (ret < 0) {
		berth_stat_add(BERTH_STAT_CT_FULL, 1);
		return up_drop(skb, ifindex, BERTH_DROP_CT_FULL, len);
	}
	reason = 0;
	e = berth_ct_commit(&okey, orig, &rkey, &reason);
	if (!e)
		return up_drop(skb, ifindex, reason, len);
	berth_ct_seen(e, &p, len);
	berth_frag_record(skb, &p);
	if (berth_nat_apply(skb, &p, &e->rewrite, 1) < 0)
		return up_drop(skb, ifindex, BERTH_DROP_MALFORMED, len);
	return up_out(skb, e, ifindex, len);
}

/* Each family its own frame: the NAT66 calls do not stack on the IPv4 path's. */
SEC("tc")
int berth_up_in(struct __sk_buff *skb)
{
	struct ethhdr *eth = (void *)(long)skb->data;

	if ((void *)(eth + 1) <= (void *)(long)skb->data_end && eth->h_proto == bpf_htons(ETH_P_IPV6) && berth_fast_path)
		return up_in6(skb);
	return up_in4(skb);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
