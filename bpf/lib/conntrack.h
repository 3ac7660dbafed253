/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * berth's connection tracking (map berth_ct, see berth_contract.h).
 *
 * A flow is two entries ("halves"), each keyed by the tuple a packet ARRIVES
 * with in one direction; `rewrite` is the tuple it LEAVES with. The half
 * created for the direction that opened the flow is the "orig" half; the
 * other carries BERTH_CT_REPLY. The reply half's key is the orig half's
 * `rewrite` reversed and vice versa, so either half finds the other.
 *
 * Who writes what (the packet path never deletes a live flow; the
 * controller's sweeper expires and deletes both halves together):
 *   - created_ns: both halves, the same value, at creation.
 *   - last_seen_ns, packets, bytes, tcp_flags_seen: each half for the packets
 *     of its own direction only. A flow's idle time is now minus the larger
 *     last_seen_ns of its halves.
 *   - state: each half moves on its own packets:
 *       TCP RST -> CLOSED; TCP FIN -> CLOSING (unless CLOSED);
 *       TCP SYN on a CLOSING/CLOSED half -> back to NEW (a reused tuple);
 *       the reply half's first packet (state NEW) -> ESTABLISHED, and it also
 *       moves the orig half from NEW to ESTABLISHED ("a reply was seen").
 *     So the orig half alone says whether the flow was answered; the flow's
 *     state for the sweeper is the larger of the two halves' states.
 *   - flags: fixed at creation (REPLY on the reply half; MASQ / PUBLISHED /
 *     HAIRPIN on both).
 * Counter updates use atomic adds (a flow's two directions may be handled by
 * two CPUs at once); the state and last_seen stores are plain (last writer
 * wins, every writer writes a valid value).
 *
 * Insertion: the reply half first with BPF_NOEXIST (that is the collision
 * test of port allocation), then the orig half with BPF_NOEXIST; a failure of
 * the second removes the first. A full table (-E2BIG / -ENOMEM) refuses the
 * flow: nothing is ever evicted.
 */
#ifndef BERTH_LIB_CONNTRACK_H
#define BERTH_LIB_CONNTRACK_H

#include "kernel.h"
#include "lib/maps.h"
#include "lib/l4.h"

#include "lib/stats.h"

static __always_inline void berth_ct_key_of(struct berth_ct_key *k, const struct berth_l4 *p)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->sport = p->sport;
	k->dport = p->dport;
	k->proto = p->proto;
}

static __always_inline void berth_ct_reverse(struct berth_ct_key *out, const struct berth_ct_key *in)
{
	__builtin_memset(out, 0, sizeof(*out));
	out->saddr = in->daddr;
	out->daddr = in->saddr;
	out->sport = in->dport;
	out->dport = in->sport;
	out->proto = in->proto;
}

static __always_inline struct berth_ct_entry *berth_ct_lookup(const struct berth_l4 *p)
{
	struct berth_ct_key k;

	berth_ct_key_of(&k, p);
	return bpf_map_lookup_elem(&berth_ct, &k);
}

/* Account a packet of this half's direction and move the state (see top). */
static __always_inline void berth_ct_seen(struct berth_ct_entry *e, const struct berth_l4 *p, __u32 len)
{
	__u8 state = e->state;

	e->last_seen_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, len);
	if (p->proto == IPPROTO_TCP) {
		__u8 f = p->tcp_flags;

		if ((e->tcp_flags_seen | f) != e->tcp_flags_seen)
			e->tcp_flags_seen |= f;
		if ((f & BERTH_TCP_SYN) && state >= BERTH_CT_CLOSING)
			state = BERTH_CT_NEW;
		if (f & BERTH_TCP_RST)
			state = BERTH_CT_CLOSED;
		else if ((f & BERTH_TCP_FIN) && state < BERTH_CT_CLOSING)
			state = BERTH_CT_CLOSING;
	}
	if ((e->flags & BERTH_CT_REPLY) && state == BERTH_CT_NEW) {
		struct berth_ct_key ok;
		struct berth_ct_entry *orig;

		state = BERTH_CT_ESTABLISHED;
		berth_ct_reverse(&ok, &e->rewrite);
		orig = bpf_map_lookup_elem(&berth_ct, &ok);
		if (orig && orig->state == BERTH_CT_NEW)
			orig->state = BERTH_CT_ESTABLISHED;
	}
	if (state != e->state)
		e->state = state;
}

/* Fill the bookkeeping of a fresh half for its first packet. */
static __always_inline void berth_ct_init(struct berth_ct_entry *e, __u64 now, __u8 flags)
{
	e->created_ns = now;
	e->last_seen_ns = now;
	e->packets = 0;
	e->bytes = 0;
	e->state = BERTH_CT_NEW;
	e->flags = flags;
	e->tcp_flags_seen = 0;
	e->pad = 0;
}

/* How a half leaves: the interface, how, the veth it is counted on, its MACs. */
static __always_inline void berth_ct_set_out(struct berth_ct_entry *e, __u32 ifindex, __u32 kind, __u32 count_ifindex,
					     const __u8 *smac, const __u8 *dmac)
{
	e->out_ifindex = ifindex;
	e->out_kind = kind;
	e->count_ifindex = count_ifindex;
	__builtin_memcpy(e->out_smac, smac, ETH_ALEN);
	__builtin_memcpy(e->out_dmac, dmac, ETH_ALEN);
}

/* Both halves of a new flow, stamped with one clock reading. */
static __always_inline void berth_ct_init_pair(struct berth_ct_entry *orig, struct berth_ct_entry *reply, __u8 flags)
{
	__u64 now = bpf_ktime_get_ns();

	berth_ct_init(orig, now, flags);
	berth_ct_init(reply, now, flags | BERTH_CT_REPLY);
}

/* Insert one half. 0, -EEXIST (key taken), or -E2BIG/-ENOMEM (table full). */
static __always_inline int berth_ct_insert(const struct berth_ct_key *k, const struct berth_ct_entry *e)
{
	return bpf_map_update_elem(&berth_ct, k, e, BPF_NOEXIST);
}

/*
 * Second step of a pair: insert the orig half once the reply half is in.
 * Returns the live orig half, or NULL with *reason set.
 * If another CPU created the same flow a moment earlier (-EEXIST on the orig
 * key), our reply half is removed and theirs is used.
 */
static __always_inline struct berth_ct_entry *berth_ct_commit(const struct berth_ct_key *okey, const struct berth_ct_entry *orig,
							       const struct berth_ct_key *rkey, __u32 *reason)
{
	int ret = berth_ct_insert(okey, orig);

	if (ret < 0) {
		bpf_map_delete_elem(&berth_ct, rkey);
		if (ret != -EEXIST) {
			berth_stat_add(BERTH_STAT_CT_FULL, 1);
			*reason = BERTH_DROP_CT_FULL;
			return NULL;
		}
	} else {
		berth_stat_add(BERTH_STAT_CT_CREATED, 1);
	}
	{
		struct berth_ct_entry *e = bpf_map_lookup_elem(&berth_ct, okey);

		if (!e)
			*reason = BERTH_DROP_NO_ENDPOINT;
		return e;
	}
}

#endif
