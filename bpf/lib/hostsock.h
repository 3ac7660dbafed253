/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Host sockets against translated tuples. A source-translated flow
 * (masquerade, hairpin) leaves as A:port -> R:P, and its replies come back
 * as R:P -> A:port, the reply half's key. A host socket that would receive
 * those replies owns the tuple: a UDP socket bound to that port (connected
 * to R:P or not), a TCP connection to R:P (TIME_WAIT included), or a TCP
 * listener on the port. The kernel's NAT never takes such a tuple (it sees
 * the host socket's own conntrack entry), and neither does berth: the port
 * allocator (lib/nat.h) skips it as it skips a port a flow holds. Explicit
 * binds inside the masquerade range are thereby safe whenever the host
 * socket exists first. Host sockets are looked up in the namespace of the
 * interface the packet arrived on (the host's, for a container's veth).
 * ICMP echo identifiers are not checked (host ping sockets are rare, and
 * such a clash costs a ping reply, never a connection).
 */
#ifndef BERTH_LIB_HOSTSOCK_H
#define BERTH_LIB_HOSTSOCK_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/addr.h"

/* 1 when a host socket would receive the packets keyed rkey (a reply half's key). */
static __always_inline int berth_host_sock_owns(struct __sk_buff *skb, const struct berth_ct_key *rkey)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	if (rkey->proto != IPPROTO_TCP && rkey->proto != IPPROTO_UDP)
		return 0;
	if (rkey->family == BERTH_AF_INET6) {
		__builtin_memcpy(t.ipv6.saddr, rkey->saddr, 16);
		__builtin_memcpy(t.ipv6.daddr, rkey->daddr, 16);
		t.ipv6.sport = rkey->sport;
		t.ipv6.dport = rkey->dport;
		if (rkey->proto == IPPROTO_TCP)
			sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
		else
			sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	} else {
		t.ipv4.saddr = berth_addr4(rkey->saddr);
		t.ipv4.daddr = berth_addr4(rkey->daddr);
		t.ipv4.sport = rkey->sport;
		t.ipv4.dport = rkey->dport;
		if (rkey->proto == IPPROTO_TCP)
			sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		else
			sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

#endif
