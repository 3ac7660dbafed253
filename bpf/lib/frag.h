/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Fragments of the flows berth translates (the approach of Cilium's
 * ipv4_handle_fragmentation): only a datagram's first fragment (offset 0,
 * MF) carries the transport header, so berth translates it like a whole
 * datagram and records its ports in berth_frag, an LRU hash keyed by the
 * ARRIVING packet's (saddr, daddr, IP id, proto). A later fragment (offset
 * > 0) takes its ports from there, finds its conntrack half with them and
 * gets its addresses rewritten (the IP header checksum only: the transport
 * checksum lies in the first fragment, whose incremental update covers the
 * whole datagram since the delta does not depend on the payload), and is
 * sent the same way.
 *
 * Records are never deleted (fragments may come in any order): the LRU
 * recycles them, and a first fragment of a new datagram that reuses a key
 * overwrites it. A later fragment that arrives before its first (or after
 * its record was recycled) finds nothing: the entry programs decide (a
 * container's is dropped as FRAG_ORPHAN where it would leave untranslated,
 * an uplink's is left to the host's own reassembly).
 *
 * Keys carry the sender's address, which the source check binds to the
 * container (and, on an uplink, a client can only hit the records of its
 * own address): a sender reaches only its own records.
 */
#ifndef BERTH_LIB_FRAG_H
#define BERTH_LIB_FRAG_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/l4.h"
#include "lib/csum.h"

#define BERTH_MAX_FRAG 8192

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BERTH_MAX_FRAG);
	__type(key, struct berth_frag_key);
	__type(value, struct berth_frag_ports);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_frag SEC(".maps");

/* The record's key for the packet p describes (as it arrived). 0, or -1 when the id cannot be read. */
static __always_inline int berth_frag_key_of(struct __sk_buff *skb, const struct berth_l4 *p, struct berth_frag_key *k)
{
	__be16 id;

	__builtin_memset(k, 0, sizeof(*k));
	if (bpf_skb_load_bytes(skb, p->l3_off + offsetof(struct iphdr, id), &id, sizeof(id)) < 0)
		return -1;
	k->id = bpf_ntohs(id);
	berth_addr_set4(k->saddr, p->saddr);
	berth_addr_set4(k->daddr, p->daddr);
	k->proto = p->proto;
	k->family = BERTH_AF_INET;
	return 0;
}

/* A first fragment berth is about to translate: its ports, for the later fragments. Reads only the packet. */
static __always_inline void berth_frag_record(struct __sk_buff *skb, const struct berth_l4 *p)
{
	struct berth_frag_key k;
	struct berth_frag_ports v;

	if (p->frag != BERTH_FRAG_FIRST || !p->has_ports || berth_frag_key_of(skb, p, &k) < 0)
		return;
	v.sport = p->sport;
	v.dport = p->dport;
	bpf_map_update_elem(&berth_frag, &k, &v, BPF_ANY);
}

/*
 * A later fragment: the ports its first fragment recorded, written into
 * p->sport/dport so that berth_ct_lookup finds its half. has_ports stays 0
 * (there is no transport header to rewrite or to open a flow with).
 * 1 when a record was found.
 */
static __always_inline int berth_frag_ports_of(struct __sk_buff *skb, struct berth_l4 *p)
{
	struct berth_frag_key k;
	struct berth_frag_ports *v;

	if (p->frag != BERTH_FRAG_LATER || berth_frag_key_of(skb, p, &k) < 0)
		return 0;
	v = bpf_map_lookup_elem(&berth_frag, &k);
	if (!v)
		return 0;
	p->sport = v->sport;
	p->dport = v->dport;
	return 1;
}

/* Rewrite a later fragment's addresses to to's, the IP header checksum only, and decrement its TTL (routed). */
static __always_inline int berth_frag_apply(struct __sk_buff *skb, const struct berth_l4 *p, const struct berth_ct_key *to)
{
	__u32 l3csum = p->l3_off + offsetof(struct iphdr, check);
	int ret;

	ret = berth_set_addr(skb, p->l3_off + offsetof(struct iphdr, saddr), l3csum, 0, 0, p->saddr, berth_addr4(to->saddr));
	if (ret < 0)
		return ret;
	ret = berth_set_addr(skb, p->l3_off + offsetof(struct iphdr, daddr), l3csum, 0, 0, p->daddr, berth_addr4(to->daddr));
	if (ret < 0)
		return ret;
	return berth_dec_ttl(skb, p->l3_off);
}

/* A later fragment's bookkeeping in its half: it carries no flags, so no state moves. */
static __always_inline void berth_frag_seen(struct berth_ct_entry *e, __u32 len)
{
	e->last_seen_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, len);
}

#endif
