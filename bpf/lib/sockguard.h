/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The other order of lib/hostsock.h: a host socket bound explicitly to a
 * port of the masquerade range that connects or sends to a destination R:P
 * for which a translated flow already holds that port on an uplink address
 * (the flow's reply half, R:P -> uplink:port, is in berth_ct). Its packets
 * would leave with the flow's tuple and its replies would go to the
 * container. The kernel's NAT would re-map the host socket's port; berth
 * does not see the host's outgoing packets, so the cgroup hook refuses the
 * call instead (connect() / sendmsg() fail with EPERM), a clear error rather
 * than answers lost. Sockets bound to an ephemeral port (outside the range:
 * the controller checks) and sockets that bind no port are never refused.
 */
#ifndef BERTH_LIB_SOCKGUARD_H
#define BERTH_LIB_SOCKGUARD_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/maps.h"
#include "lib/addr.h"

/* Load-time: the masquerade range (host byte order), as for the veth programs. 0: no guard. */
const volatile __u16 berth_nat_port_min = 0;
const volatile __u16 berth_nat_port_max = 0;

struct berth_sockguard {
	struct berth_ct_key key; /* daddr filled per uplink, in key.family */
	int held;
};

static long berth_sockguard_uplink(struct bpf_map *map, const void *k, void *v, void *ctx)
{
	struct berth_sockguard *g = ctx;
	const struct berth_uplink *u = v;

	if (g->key.family == BERTH_AF_INET6) {
		if (berth_addr_is_zero(u->addr6))
			return 0;
		berth_addr_copy(g->key.daddr, u->addr6);
	} else {
		berth_addr_set4(g->key.daddr, u->addr);
	}
	if (bpf_map_lookup_elem(&berth_ct, &g->key)) {
		g->held = 1;
		return 1;
	}
	return 0;
}

/* 1 when the socket's bound port is held by a translated flow to the call's destination (see top). */
static __always_inline int berth_sock_port_held(struct bpf_sock_addr *ctx)
{
	struct berth_sockguard g = {};
	struct bpf_sock *sk = ctx->sk;
	__u32 port, src;

	if (!sk || !berth_nat_port_min)
		return 0;
	port = sk->src_port;
	if (port < berth_nat_port_min || port > berth_nat_port_max)
		return 0;
	src = sk->src_ip4;
	berth_addr_set4(g.key.saddr, ctx->user_ip4);
	g.key.family = BERTH_AF_INET;
	g.key.sport = (__be16)ctx->user_port;
	g.key.dport = bpf_htons((__u16)port);
	g.key.proto = ctx->protocol;
	if (src) {
		berth_addr_set4(g.key.daddr, src);
		return bpf_map_lookup_elem(&berth_ct, &g.key) != NULL;
	}
	bpf_for_each_map_elem(&berth_uplink, berth_sockguard_uplink, &g, 0);
	return g.held;
}

/*
 * The same for an IPv6 socket (connect6 / sendmsg6): dst is the call's
 * destination as a key address (a v4-mapped one is an IPv4 flow's).
 */
static __always_inline int berth_sock_port_held6(struct bpf_sock_addr *ctx, const __be32 *dst)
{
	struct berth_sockguard g = {};
	struct bpf_sock *sk = ctx->sk;
	__be32 src[4];
	__u32 port;

	if (!sk || !berth_nat_port_min)
		return 0;
	port = sk->src_port;
	if (port < berth_nat_port_min || port > berth_nat_port_max)
		return 0;
	src[0] = sk->src_ip6[0];
	src[1] = sk->src_ip6[1];
	src[2] = sk->src_ip6[2];
	src[3] = sk->src_ip6[3];
	berth_addr_copy(g.key.saddr, dst);
	g.key.family = dst[0] == 0 && dst[1] == 0 && dst[2] == BERTH_V4MAPPED_WORD ? BERTH_AF_INET : BERTH_AF_INET6;
	g.key.sport = (__be16)ctx->user_port;
	g.key.dport = bpf_htons((__u16)port);
	g.key.proto = ctx->protocol;
	if (!berth_addr_is_zero(src) && !(g.key.family == BERTH_AF_INET && src[3] == 0)) {
		berth_addr_copy(g.key.daddr, src);
		return bpf_map_lookup_elem(&berth_ct, &g.key) != NULL;
	}
	bpf_for_each_map_elem(&berth_uplink, berth_sockguard_uplink, &g, 0);
	return g.held;
}

#endif
