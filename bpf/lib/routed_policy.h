/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The user's policy (lib/policy.h, Docker's DOCKER-USER) on the way into a
 * routed network (lib/routed.h, lib/routed6.h), both families.
 *
 * Docker's FORWARD chain jumps to DOCKER-USER before anything else, so a
 * user's rule sees every packet forwarded from outside into a routed
 * network, before DOCKER's per-port ACCEPTs, its ICMP ACCEPT, DOCKER-CT's
 * RELATED,ESTABLISHED and the bridge's final DROP. No NAT touches such a
 * packet, so a rule meets it on its own header, as iptables would:
 *   source     the packet's source (the client; for the reply of a flow a
 *              container opened, the outside host that answers);
 *   container  the packet's destination, the container's own address (the
 *   / network  one a routed container's ports are published on);
 *   port       the packet's destination port, the container port (a routed
 *              publish has no host port: `iptables -I DOCKER-USER -p tcp
 *              --dport 80` matches a routed container's port 80);
 *              ICMP and the other protocols have none, so a rule with a
 *              port never meets them;
 *   proto      tcp or udp: a rule without one meets ICMP and the rest too.
 * Every packet is checked, the first of a flow and every later one alike
 * (berth keeps no state for a flow to a routed published port), so a new
 * deny cuts an established flow at its next packet. A deny is counted as
 * drop POLICY on the bridge (to_container) and in the rule's hit counters.
 *
 * Where berth cannot see what Docker's reassembly would show the rule (a
 * TCP/UDP fragment, a header cut short), the policy is not asked: the
 * packet is dropped all the same by the checks after it (FRAGMENT,
 * NOT_PUBLISHED).
 */
#ifndef BERTH_LIB_ROUTED_POLICY_H
#define BERTH_LIB_ROUTED_POLICY_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/policy.h"

/* The ports are known to the policy: not a TCP/UDP fragment nor a truncated header. */
static __always_inline int berth_routed_policy_ports(const struct berth_l4 *l4, __be16 *port)
{
	*port = 0;
	if (l4->proto != IPPROTO_TCP && l4->proto != IPPROTO_UDP)
		return 1;
	if (l4->frag != BERTH_FRAG_NONE || !l4->has_ports)
		return 0;
	*port = l4->dport;
	return 1;
}

/* An IPv4 packet p into a routed network: BERTH_DROP_POLICY when the policy denies it. */
static __always_inline __u32 berth_routed_policy4(const struct berth_l4 *p, __u32 len)
{
	__be16 port;

	if (!berth_routed_policy_ports(p, &port))
		return BERTH_DROP_NONE;
	return berth_policy_denies4(p->saddr, p->daddr, port, p->proto, len) ? BERTH_DROP_POLICY : BERTH_DROP_NONE;
}

/* An IPv6 packet p into a routed-v6 network: BERTH_DROP_POLICY when the policy denies it. */
static __always_inline __u32 berth_routed_policy6(const struct berth_l6 *p, __u32 len)
{
	__be32 daddr[4];
	__be16 port;

	if (!berth_routed_policy_ports(&p->l4, &port))
		return BERTH_DROP_NONE;
	__builtin_memcpy(daddr, p->daddr, 16);
	return berth_policy_denies6(p->saddr, daddr, port, p->l4.proto, len) ? BERTH_DROP_POLICY : BERTH_DROP_NONE;
}

#endif
