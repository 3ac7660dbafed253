/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The user's policy (lib/policy.h, Docker's DOCKER-USER) on a container's
 * own flows: the replies of its masqueraded flows, and what it sends out.
 * Docker's FORWARD chain jumps to DOCKER-USER for every forwarded packet,
 * those included, so a rule that names them applies to each of their
 * packets, the first and every later one alike.
 *
 * Replies of masqueraded flows (NAT44 and NAT66), on the served interface's
 * ingress where berth de-NATs them (tc_uplink.bpf.c, lib/nat6_path.h):
 * Docker sees them after de-NAT, so an inbound rule (one without
 * `destination:`) meets them as
 *   source     the packet's source (the outside host that answers);
 *   container  the container the reply goes to (its own address; a
 *   / network  network: its subnet);
 *   proto      the packet's protocol;
 *   port       never: a rule's port is a published host port, and a
 *              masqueraded flow has none (its reply's destination port is
 *              the port masquerade chose). A rule with `port:` does not
 *              meet a reply (iptables' `--dport 8080` would meet a reply
 *              only when masquerade happened to pick 8080).
 * So `- {action: deny, source: 192.0.2.7}` cuts every flow a container
 * opened to 192.0.2.7 at its next reply packet, as Docker's does. Checked
 * before the packet is translated; a deny is drop POLICY on the interface
 * it arrived on, and counted in the rule's hits.
 *
 * Egress (a rule with `destination:`, berth_policy_rule.egress = 1): what a
 * container sends out of the host, on its veth's ingress (tc_veth.bpf.c,
 * lib/nat6_path.h): masqueraded flows (new, and every later packet of a
 * tracked one), the replies of its published flows, a routed network's
 * traffic, and a network without masquerade's (passed to the kernel
 * untranslated). Matched on the packet as the container sent it (Docker's
 * FORWARD sees it before POSTROUTING's MASQUERADE):
 *   source / container / network   the sender (the packet's source);
 *   destination                    the packet's destination;
 *   proto, port                    its protocol and destination port (a
 *              TCP/UDP fragment whose ports berth does not know meets only
 *              the rules without a port).
 * Not checked: traffic to the host itself (Docker's INPUT, not FORWARD),
 * to another container on the host (isolation and icc decide), hairpin.
 * The egress walk is skipped entirely unless the bank in force holds an
 * egress rule (berth_policy_ctl.egress_banks, set by the controller before
 * it flips that bank in): no rule with a destination, no cost but one
 * array lookup.
 */
#ifndef BERTH_LIB_EGRESS_POLICY_H
#define BERTH_LIB_EGRESS_POLICY_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/maps.h"
#include "lib/addr.h"
#include "lib/policy.h"

/* e is the reply half of a masqueraded flow (the outside host answering). */
static __always_inline int berth_ct_masq_reply(const struct berth_ct_entry *e)
{
	return (e->flags & (BERTH_CT_MASQ | BERTH_CT_REPLY)) == (BERTH_CT_MASQ | BERTH_CT_REPLY);
}

/* An IPv4 packet p of tracked half e, from outside: POLICY when it is a
 * masqueraded flow's reply the policy denies. */
static __always_inline __u32 berth_reply_policy4(const struct berth_l4 *p, const struct berth_ct_entry *e, __u32 len)
{
	if (!berth_ct_masq_reply(e))
		return BERTH_DROP_NONE;
	return berth_policy_denies4(p->saddr, berth_addr4(e->rewrite.daddr), 0, p->proto, len) ? BERTH_DROP_POLICY
												  : BERTH_DROP_NONE;
}

/* The same for IPv6 (NAT66). */
static __always_inline __u32 berth_reply_policy6(const struct berth_l6 *p, const struct berth_ct_entry *e, __u32 len)
{
	if (!berth_ct_masq_reply(e))
		return BERTH_DROP_NONE;
	return berth_policy_denies6(p->saddr, e->rewrite.daddr, 0, p->l4.proto, len) ? BERTH_DROP_POLICY
										     : BERTH_DROP_NONE;
}

/* The bank in force holds an egress rule. */
static __always_inline int berth_egress_policy_on(void)
{
	struct berth_policy_ctl *ctl;
	__u32 zero = 0;

	ctl = bpf_map_lookup_elem(&berth_policy_active, &zero);
	return ctl && (ctl->egress_banks & (ctl->bank ? 2u : 1u));
}

/* The destination port an egress rule's port meets (0: none, or not known). */
static __always_inline __be16 berth_egress_port(const struct berth_l4 *p)
{
	return (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) ? p->dport : 0;
}

/*
 * An IPv4 packet p a container sends out: POLICY when an egress rule denies
 * it. Global functions (as berth_policy_denies): the verifier checks each
 * once, not once per path of the veth program that calls it. No packet
 * (never so): no verdict here, the caller's own checks follow.
 */
__noinline __u32 berth_egress_policy4(const struct berth_l4 *p, __u32 len)
{
	struct berth_policy_pkt q = { .v6 = 0, .len = len, .egress = 1 };

	if (!p || !berth_egress_policy_on())
		return BERTH_DROP_NONE;
	q.hport = berth_egress_port(p);
	q.proto = p->proto;
	berth_addr_set4(q.saddr, p->saddr);
	berth_addr_set4(q.caddr, p->saddr);
	berth_addr_set4(q.daddr, p->daddr);
	return berth_policy_denies(&q) ? BERTH_DROP_POLICY : BERTH_DROP_NONE;
}

/* An IPv6 packet p a container sends out: POLICY when an egress rule denies it. */
__noinline __u32 berth_egress_policy6(const struct berth_l6 *p, __u32 len)
{
	struct berth_policy_pkt q = { .v6 = 1, .len = len, .egress = 1 };

	if (!p || !berth_egress_policy_on())
		return BERTH_DROP_NONE;
	q.hport = berth_egress_port(&p->l4);
	q.proto = p->l4.proto;
	__builtin_memcpy(q.saddr, p->saddr, 16);
	__builtin_memcpy(q.caddr, p->saddr, 16);
	__builtin_memcpy(q.daddr, p->daddr, 16);
	return berth_policy_denies(&q) ? BERTH_DROP_POLICY : BERTH_DROP_NONE;
}

#endif
