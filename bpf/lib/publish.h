/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Published ports (map berth_publish): which container serves
 * (host address, port, protocol), and the checks every path shares.
 *
 * Keys: host_addr = the address the port is published on (IPv4 v4-mapped,
 * lib/addr.h), or "every local address" of its family (Docker's 0.0.0.0:
 * ::ffff:0.0.0.0; [::]: ::); host_port in network byte order; proto
 * IPPROTO_TCP / IPPROTO_UDP; family BERTH_AF_INET / BERTH_AF_INET6. An exact
 * address entry wins over the any entry. The value's addr is the container's
 * address in the key's family.
 * Entries flagged BERTH_PUB_LOOPBACK (published on 127.0.0.1) are reachable
 * from the host itself only, through the socket hooks (cgroup_sock.bpf.c):
 * packet paths skip them.
 */
#ifndef BERTH_LIB_PUBLISH_H
#define BERTH_LIB_PUBLISH_H

#include "kernel.h"
#include "lib/maps.h"
#include "lib/addr.h"

/* 127.0.0.0/8, on an address in network byte order */
static __always_inline int berth_is_loopback(__be32 addr)
{
	return (bpf_ntohl(addr) >> 24) == 127;
}

static __always_inline struct berth_publish_value *berth_publish_lookup(__be32 host_addr, __be16 port, __u8 proto)
{
	struct berth_publish_key k = { .host_port = port, .proto = proto, .family = BERTH_AF_INET };

	berth_addr_set4(k.host_addr, host_addr);
	return bpf_map_lookup_elem(&berth_publish, &k);
}

/* The IPv6 entry of (host address, port, proto); '::' (all zero) is the any entry. */
static __always_inline struct berth_publish_value *berth_publish_lookup6(const __be32 *host_addr, __be16 port, __u8 proto)
{
	struct berth_publish_key k = { .host_port = port, .proto = proto, .family = BERTH_AF_INET6 };

	berth_addr_copy(k.host_addr, host_addr);
	return bpf_map_lookup_elem(&berth_publish, &k);
}

/*
 * For a packet to local address `addr` (a host address: the caller checked):
 * the published port serving it, exact address first, then any address.
 * LOOPBACK entries are not reachable by packets and are skipped, as are
 * ROUTED ones (a routed network's container port, keyed by the container's
 * address: no host port).
 */
static __always_inline struct berth_publish_value *berth_publish_find(__be32 addr, __be16 port, __u8 proto)
{
	struct berth_publish_value *v = berth_publish_lookup(addr, port, proto);

	if (v && !(v->flags & (BERTH_PUB_LOOPBACK | BERTH_PUB_ROUTED)))
		return v;
	v = berth_publish_lookup(0, port, proto);
	if (v && !(v->flags & (BERTH_PUB_LOOPBACK | BERTH_PUB_ROUTED)))
		return v;
	return NULL;
}

static __always_inline int berth_is_host_addr(__be32 addr)
{
	struct berth_ip_key k = { .addr = addr };

	return bpf_map_lookup_elem(&berth_host_addr, &k) != NULL;
}

/* The published v6 port serving (addr, port, proto): exact address, then ::. */
static __always_inline struct berth_publish_value *berth_publish_find6(const __be32 *addr, __be16 port, __u8 proto)
{
	__be32 any[4] = {};
	struct berth_publish_value *v = berth_publish_lookup6(addr, port, proto);

	if (v && !(v->flags & (BERTH_PUB_LOOPBACK | BERTH_PUB_ROUTED)))
		return v;
	v = berth_publish_lookup6(any, port, proto);
	if (v && !(v->flags & (BERTH_PUB_LOOPBACK | BERTH_PUB_ROUTED)))
		return v;
	return NULL;
}

static __always_inline int berth_is_host_addr6(const __be32 *addr)
{
	struct berth_ip6_key k;

	berth_addr_copy(k.addr, addr);
	return bpf_map_lookup_elem(&berth_host_addr6, &k) != NULL;
}

/*
 * What arrives on an uplink and must never get in (shared with XDP):
 * 127.0.0.0/8 from outside (LOOPBACK_ONLY), any container address
 * (NOT_PUBLISHED: Docker 29's raw PREROUTING rule; published ports are
 * reached through a host address), except a routed network's container,
 * which Docker 29 does not guard there: the bridge's choke point decides
 * (lib/routed.h). BERTH_DROP_NONE otherwise.
 */
static __always_inline __u32 berth_uplink_refuse(__be32 daddr)
{
	struct berth_ip_key k = { .addr = daddr };
	struct berth_endpoint *ep;

	if (berth_is_loopback(daddr))
		return BERTH_DROP_LOOPBACK_ONLY;
	ep = bpf_map_lookup_elem(&berth_ep_by_ip, &k);
	if (ep && !(ep->flags & BERTH_EP_ROUTED))
		return BERTH_DROP_NOT_PUBLISHED;
	return BERTH_DROP_NONE;
}

#endif
