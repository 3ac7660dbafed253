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
 * Who writes what (the packet path deletes a flow only to evict it, below;
 * the controller's sweeper expires and deletes both halves together):
 *   - created_ns: both halves, the same value, at creation.
 *   - last_seen_ns, packets, bytes, tcp_flags_seen, tcp_end/ack/win/wscale:
 *     each half for the packets of its own direction only. A flow's idle time is
 *     now minus the larger last_seen_ns of its halves.
 *   - state, and the ASSURED flag: the flow's, written to both halves on a
 *     transition (the only time a packet looks up the other half). The
 *     other flags are fixed at creation (REPLY on the reply half; MASQ /
 *     PUBLISHED / HAIRPIN on both).
 *
 * States, as the kernel's nf_conntrack_proto_tcp.c keeps them but with its
 * FIN states folded into CLOSING ("dir" = the packet's direction):
 *   first packet   SYN -> SYN_SENT; RST -> CLOSED; FIN -> CLOSING; any other
 *                  -> ESTABLISHED, not assured (picked up mid-stream, the
 *                  kernel's nf_conntrack_tcp_loose); UDP/ICMP -> NEW.
 *   SYN_SENT       reply SYN-ACK -> SYN_RECV (the short 60 s timeout).
 *   SYN_RECV       orig ACK -> ESTABLISHED + ASSURED (the handshake is done).
 *   ESTABLISHED    not assured (picked up): a reply without RST -> ASSURED.
 *   SYN_RECV, ESTABLISHED   FIN (either dir) -> CLOSING.
 *   CLOSING, CLOSED         orig SYN -> SYN_SENT, not assured: the tuple is
 *                           reused by a new connection (a fresh sequence
 *                           space in both halves).
 *   any state      RST accepted (below) -> CLOSED.
 *   UDP, ICMP      the first reply -> ESTABLISHED + ASSURED.
 * Anything else leaves the state as it is and is forwarded as before.
 *
 * RST (a simplified tcp_in_window): an RST from D to P is judged by what
 * each side has sent. It is accepted and closes the flow when its seq is
 * exactly P's highest ack (what P expects next) or D's own tcp_end (an RST
 * right after D's data), or, while P has acknowledged nothing yet (P sent
 * its SYN only), when it acknowledges exactly what P sent (the answer to a
 * SYN). Otherwise it is in window when P.ack <= seq <= P.ack + W, with W the
 * larger of P's last window and D's data in flight (D.end - P.ack): passed,
 * the state kept (the receiver answers with a challenge ACK, RFC 5961, and
 * the real peer then resets exactly). Out of window it is INVALID, as the
 * kernel marks it: dropped (CT_INVALID), nothing changed, not even
 * last_seen. A flow that is already CLOSING or CLOSED takes any RST (the
 * kernel skips the check there too).
 *
 * Window scaling (RFC 7323, as tcp_in_window): each half keeps in
 * tcp_wscale the shift its direction's first SYN (or SYN-ACK) announced,
 * read by a bounded option walk (lib/tcpopt.h), and whether its tcp_win
 * came from a SYN. P's window is P's tcp_win shifted by P's scale when both
 * directions announced one, and unshifted when either did not or when it is
 * a SYN's window (never scaled). A flow picked up mid-stream saw no SYN: its
 * windows stay unshifted, so narrower than the real ones (an exact RST is
 * accepted regardless). A reused tuple forgets both scales with the rest.
 *
 * Eviction (why a flood of spoofed SYNs cannot lock anyone out): every flow
 * is recorded at creation in berth_ct_ring, a FIFO of berth_ct_ring_size
 * slots (the controller's settings.conntrack.unassuredMax). Recording in
 * slot n % size evicts the flow recorded there size records earlier if it
 * is still unassured; and an insert that finds the table full evicts the
 * oldest recorded flow that is still unassured, or assured but CLOSING or
 * CLOSED (the kernel's early_drop takes those too: tcp_can_early_drop), and
 * tries again. An assured flow is recorded a second time when it starts
 * closing (its FIN, or an accepted RST), so that the evictor finds it. So
 * at most `size` flows wait unassured at once, the oldest go first, both
 * halves together, and an ESTABLISHED assured flow is never evicted: a flood
 * churns the ring while established flows stay untouched, and a new flow is
 * refused (CT_FULL) only when the table is full of assured flows that the
 * evictor's bounded scan does not find closing. Promotion costs nothing (a
 * flag in place); the lookup path is one hash lookup, as before. A flow
 * reopened on a reused tuple is recorded again. Every eviction is counted
 * (ct_evicted), every promotion too (ct_assured). Closing records share the
 * ring with new flows, so a burst of closings shortens the wait an
 * unassured flow gets (still `size` records). A closing flow whose record
 * was overwritten, or already passed by the evictor, is left to the
 * sweeper's timeouts.
 * (Chosen over a separate LRU table for new flows: an LRU evicts halves one
 * by one and silently, so a flow could lose its reply half and nothing
 * would count it, and every lookup that misses would cost a second one.)
 *
 * Concurrency: counters and ring positions use atomics (a flow's two
 * directions may be handled by two CPUs at once); state, flags, tcp_* and
 * last_seen are plain stores (last writer wins, every writer writes a valid
 * value). An eviction checks the victim (same created_ns, not assured) and
 * then deletes it, not atomically: a flow whose handshake completes in that
 * instant on another CPU can still go (its next packet picks it up again:
 * a published flow is rebuilt the same, a masqueraded one keeps its port
 * when it is still free). And as with the sweeper's deletes, a packet that
 * looked a half up on another CPU just before may still write its
 * bookkeeping into the element the preallocated hash hands out again.
 *
 * Insertion: the reply half first with BPF_NOEXIST (that is the collision
 * test of port allocation), then the orig half with BPF_NOEXIST; a failure of
 * the second removes the first.
 */
#ifndef BERTH_LIB_CONNTRACK_H
#define BERTH_LIB_CONNTRACK_H

#include "kernel.h"
#include "lib/maps.h"
#include "lib/l4.h"
#include "lib/addr.h"
#include "lib/stats.h"

/* Load-time: the slots of berth_ct_ring (its max_entries; set by the
 * controller, src/platform/dataplane.ts). 0 records nothing and evicts nothing. */
const volatile __u32 berth_ct_ring_size = BERTH_MAX_CT_UNASSURED;

/* Ring positions the table-full evictor examines per failed insert, and
 * evictions an insert may make before it gives up. */
#define BERTH_CT_EVICT_SCAN 8
#define BERTH_CT_EVICT_TRIES 2

#define BERTH_TCP_ACK_SEEN(f) ((f) & BERTH_TCP_ACK)

static __always_inline int berth_seq_after(__u32 a, __u32 b)
{
	return (__s32)(a - b) > 0;
}

static __always_inline void berth_ct_key_of(struct berth_ct_key *k, const struct berth_l4 *p)
{
	__builtin_memset(k, 0, sizeof(*k));
	berth_addr_set4(k->saddr, p->saddr);
	berth_addr_set4(k->daddr, p->daddr);
	k->sport = p->sport;
	k->dport = p->dport;
	k->proto = p->proto;
	k->family = BERTH_AF_INET;
}

static __always_inline void berth_ct_reverse(struct berth_ct_key *out, const struct berth_ct_key *in)
{
	__builtin_memset(out, 0, sizeof(*out));
	berth_addr_copy(out->saddr, in->daddr);
	berth_addr_copy(out->daddr, in->saddr);
	out->sport = in->dport;
	out->dport = in->sport;
	out->proto = in->proto;
	out->family = in->family;
}

/* The per-CPU keys (struct berth_ct_keybuf). NULL never happens for slot 0 of a per-CPU array. */
static __always_inline struct berth_ct_keybuf *berth_ct_keybuf(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&berth_ct_keys, &zero);
}

static __always_inline struct berth_ct_entry *berth_ct_lookup(const struct berth_l4 *p)
{
	struct berth_ct_keybuf *kb = berth_ct_keybuf();

	if (!kb)
		return NULL;
	berth_ct_key_of(&kb->lookup, p);
	return bpf_map_lookup_elem(&berth_ct, &kb->lookup);
}

/* The other half of e's flow (NULL when it is gone). */
static __always_inline struct berth_ct_entry *berth_ct_partner(const struct berth_ct_entry *e)
{
	struct berth_ct_keybuf *kb = berth_ct_keybuf();

	if (!kb)
		return NULL;
	berth_ct_reverse(&kb->partner, &e->rewrite);
	return bpf_map_lookup_elem(&berth_ct, &kb->partner);
}

/* The per-CPU room where a new flow's two halves are built. 0 if none. */
static __always_inline int berth_ct_scratch(struct berth_ct_entry **orig, struct berth_ct_entry **reply)
{
	__u32 zero = 0;
	struct berth_ct_pair *b = bpf_map_lookup_elem(&berth_ct_build, &zero);

	if (!b)
		return 0;
	*orig = &b->orig;
	*reply = &b->reply;
	return 1;
}

/* ---- eviction ------------------------------------------------------------ */

/*
 * Evict the flow recorded in s if it is still that flow and still unassured,
 * or (closing: the table-full evictor) an assured TCP flow that is CLOSING or
 * CLOSED, as the kernel's early_drop takes those (tcp_can_early_drop).
 */
static __always_inline int berth_ct_evict_slot(const struct berth_ct_slot *s, int closing)
{
	struct berth_ct_keybuf *kb = berth_ct_keybuf();
	__u64 created = s->created_ns;
	struct berth_ct_entry *e, *r;

	if (!created || !kb)
		return 0;
	kb->evict = s->key; /* a copy: another CPU may reuse the slot meanwhile */
	e = bpf_map_lookup_elem(&berth_ct, &kb->evict);
	if (!e || e->created_ns != created || (e->flags & BERTH_CT_REPLY))
		return 0;
	if ((e->flags & BERTH_CT_ASSURED) &&
	    !(closing && kb->evict.proto == IPPROTO_TCP && (e->state == BERTH_CT_CLOSING || e->state == BERTH_CT_CLOSED)))
		return 0;
	berth_ct_reverse(&kb->evict_reply, &e->rewrite);
	r = bpf_map_lookup_elem(&berth_ct, &kb->evict_reply);
	if (r && r->created_ns == created)
		bpf_map_delete_elem(&berth_ct, &kb->evict_reply);
	bpf_map_delete_elem(&berth_ct, &kb->evict);
	berth_stat_add(BERTH_STAT_CT_EVICTED, 1);
	return 1;
}

/*
 * The table is full: evict the oldest recorded flow that is still unassured,
 * or assured and closing.
 * Walks the ring from the evictor's position (never below the oldest slot
 * not yet overwritten, never up to the newest), at most BERTH_CT_EVICT_SCAN
 * slots. 1 when a flow was evicted. A function of its own (verified once):
 * only failed inserts call it.
 */
__noinline int berth_ct_evict_oldest(void)
{
	__u32 zero = 0, size = berth_ct_ring_size, i;
	struct berth_ct_pos *pos = bpf_map_lookup_elem(&berth_ct_pos, &zero);

	if (!pos || !size)
		return 0;
	for (i = 0; i < BERTH_CT_EVICT_SCAN; i++) {
		__u64 head = pos->head, seen = pos->tail, t = seen;
		struct berth_ct_slot *s;
		__u32 slot;

		if (t + size < head)
			t = head - size; /* those slots were overwritten since */
		if (t >= head)
			return 0; /* nothing recorded that is not examined */
		if (__sync_val_compare_and_swap(&pos->tail, seen, t + 1) != seen)
			continue; /* another CPU took it: look again */
		slot = t % size;
		s = bpf_map_lookup_elem(&berth_ct_ring, &slot);
		if (s && berth_ct_evict_slot(s, 1))
			return 1; /* the slot stays as it is: its flow is gone, so it is stale */
	}
	return 0;
}

/*
 * Record a new (or reopened, or closing) flow by its orig key: the next ring
 * slot, whose previous flow is evicted if it is still unassured.
 */
static __always_inline void berth_ct_record(const struct berth_ct_key *okey, __u64 created)
{
	__u32 zero = 0, size = berth_ct_ring_size, slot;
	struct berth_ct_pos *pos;
	struct berth_ct_slot *s;

	if (!size)
		return;
	pos = bpf_map_lookup_elem(&berth_ct_pos, &zero);
	if (!pos)
		return;
	slot = __sync_fetch_and_add(&pos->head, 1) % size;
	s = bpf_map_lookup_elem(&berth_ct_ring, &slot);
	if (!s)
		return;
	if (s->created_ns != created) /* not this very flow, recorded size flows ago */
		berth_ct_evict_slot(s, 0);
	s->key = *okey;
	s->created_ns = created;
}

/*
 * An assured flow of e's (packet p's direction) that starts closing (FIN,
 * RST): recorded again, so that the table-full evictor may take it. An
 * unassured flow is recorded already (at creation).
 */
static __always_inline void berth_ct_record_closing(const struct berth_ct_entry *e, const struct berth_l4 *p)
{
	struct berth_ct_keybuf *kb;

	if (!(e->flags & BERTH_CT_ASSURED))
		return;
	kb = berth_ct_keybuf();
	if (!kb)
		return;
	if (e->flags & BERTH_CT_REPLY)
		berth_ct_reverse(&kb->record, &e->rewrite);
	else
		berth_ct_key_of(&kb->record, p);
	berth_ct_record(&kb->record, e->created_ns);
}

/* ---- states ----------------------------------------------------------------- */

/* A transition: the flow's state (and ASSURED) in this half and the other. */
static __always_inline void berth_ct_move(struct berth_ct_entry *e, struct berth_ct_entry *other, __u8 state, int assure)
{
	e->state = state;
	if (other)
		other->state = state;
	if (assure && !(e->flags & BERTH_CT_ASSURED)) {
		e->flags |= BERTH_CT_ASSURED;
		if (other)
			other->flags |= BERTH_CT_ASSURED;
		berth_stat_add(BERTH_STAT_CT_ASSURED, 1);
	}
}

#define BERTH_RST_INVALID 0
#define BERTH_RST_IN_WINDOW 1
#define BERTH_RST_CLOSES 2

/* An RST from e's direction to its peer's (see top). */
static __always_inline int berth_ct_rst_verdict(const struct berth_ct_entry *e, const struct berth_ct_entry *peer, const struct berth_l4 *p)
{
	__u8 es = e->tcp_flags_seen, ps, sc;
	__u32 off, win;

	if (!peer)
		return BERTH_RST_CLOSES; /* nothing to judge it by */
	ps = peer->tcp_flags_seen;
	if (es && p->tcp_seq == e->tcp_end)
		return BERTH_RST_CLOSES;
	if (BERTH_TCP_ACK_SEEN(ps)) {
		off = p->tcp_seq - peer->tcp_ack;
		if (!off)
			return BERTH_RST_CLOSES;
		/* P's window, shifted by P's scale when both SYNs announced one
		 * and it was not a SYN's (RFC 7323; tcp_in_window) */
		sc = peer->tcp_wscale;
		win = peer->tcp_win;
		if ((sc & e->tcp_wscale & BERTH_CT_WSCALE_SEEN) && !(sc & BERTH_CT_WSCALE_SYN_WIN))
			win <<= sc & BERTH_CT_WSCALE_SHIFT;
		if (!win)
			win = 1;
		if (es && berth_seq_after(e->tcp_end, peer->tcp_ack) && e->tcp_end - peer->tcp_ack > win)
			win = e->tcp_end - peer->tcp_ack;
		return off <= win ? BERTH_RST_IN_WINDOW : BERTH_RST_INVALID;
	}
	if (ps && (p->tcp_flags & BERTH_TCP_ACK) && p->tcp_ack == peer->tcp_end)
		return BERTH_RST_CLOSES;
	return BERTH_RST_INVALID;
}

/* This direction's sequence space; seen = tcp_flags_seen before this packet. */
static __always_inline void berth_ct_track(struct berth_ct_entry *e, const struct berth_l4 *p, __u8 seen)
{
	__u8 f = p->tcp_flags;

	if (!seen || berth_seq_after(p->tcp_end, e->tcp_end))
		e->tcp_end = p->tcp_end;
	if ((f & BERTH_TCP_ACK) && (!BERTH_TCP_ACK_SEEN(seen) || berth_seq_after(p->tcp_ack, e->tcp_ack)))
		e->tcp_ack = p->tcp_ack;
	if (e->tcp_win != p->tcp_win)
		e->tcp_win = p->tcp_win;
	if (f & BERTH_TCP_SYN) {
		/* the first SYN of this direction says its scale; a SYN's window is never scaled */
		__u8 ws = (seen & BERTH_TCP_SYN) ? e->tcp_wscale : p->tcp_wscale;

		e->tcp_wscale = ws | BERTH_CT_WSCALE_SYN_WIN;
	} else if (e->tcp_wscale & BERTH_CT_WSCALE_SYN_WIN) {
		e->tcp_wscale &= ~BERTH_CT_WSCALE_SYN_WIN;
	}
	if ((seen | f) != seen)
		e->tcp_flags_seen = seen | f;
}

/* An assured, established flow and no SYN, FIN or RST: nothing moves. */
static __always_inline int berth_ct_tcp_steady(const struct berth_ct_entry *e, const struct berth_l4 *p)
{
	return e->state == BERTH_CT_ESTABLISHED && (e->flags & BERTH_CT_ASSURED) &&
	       !(p->tcp_flags & (BERTH_TCP_SYN | BERTH_TCP_FIN | BERTH_TCP_RST));
}

/*
 * A TCP packet of e's direction that may move the flow (all but the
 * established path): 0 or a drop reason. A function of its own, so that its
 * keys stay off the callers' stack frames.
 */
static __noinline __u32 berth_ct_tcp(struct berth_ct_entry *e, const struct berth_l4 *p)
{
	struct berth_ct_entry *other = NULL;
	__u8 f = p->tcp_flags, seen = e->tcp_flags_seen, state = e->state;
	int reply = e->flags & BERTH_CT_REPLY, rst = BERTH_RST_IN_WINDOW;

	if (f & BERTH_TCP_RST) {
		if (state != BERTH_CT_CLOSING && state != BERTH_CT_CLOSED) {
			other = berth_ct_partner(e);
			rst = berth_ct_rst_verdict(e, other, p);
			if (rst == BERTH_RST_INVALID)
				return BERTH_DROP_CT_INVALID;
		} else {
			rst = BERTH_RST_CLOSES;
		}
	} else if ((f & (BERTH_TCP_SYN | BERTH_TCP_ACK)) == BERTH_TCP_SYN && !reply &&
		   (state == BERTH_CT_CLOSING || state == BERTH_CT_CLOSED)) {
		/* a reused tuple: a new connection in the old entry */
		struct berth_ct_keybuf *kb;

		other = berth_ct_partner(e);
		if (other) {
			other->tcp_flags_seen = 0;
			other->tcp_wscale = 0;
		}
		e->flags &= ~BERTH_CT_ASSURED;
		if (other)
			other->flags &= ~BERTH_CT_ASSURED;
		berth_ct_move(e, other, BERTH_CT_SYN_SENT, 0);
		state = BERTH_CT_SYN_SENT;
		seen = 0;
		kb = berth_ct_keybuf();
		if (kb) {
			berth_ct_key_of(&kb->record, p);
			berth_ct_record(&kb->record, e->created_ns);
		}
	}

	/* an RST advances no sequence space (nor may a forged one in window) */
	if (!(f & BERTH_TCP_RST))
		berth_ct_track(e, p, seen);

	if (f & BERTH_TCP_RST) {
		if (rst == BERTH_RST_CLOSES && state != BERTH_CT_CLOSED) {
			if (!other)
				other = berth_ct_partner(e);
			berth_ct_move(e, other, BERTH_CT_CLOSED, 0);
			if (state != BERTH_CT_CLOSING)
				berth_ct_record_closing(e, p);
		}
	} else if (f & BERTH_TCP_SYN) {
		if ((f & BERTH_TCP_ACK) && reply && state == BERTH_CT_SYN_SENT)
			berth_ct_move(e, berth_ct_partner(e), BERTH_CT_SYN_RECV, 0);
	} else if (f & BERTH_TCP_FIN) {
		if (state == BERTH_CT_SYN_RECV || state == BERTH_CT_ESTABLISHED) {
			berth_ct_move(e, berth_ct_partner(e), BERTH_CT_CLOSING, 0);
			berth_ct_record_closing(e, p);
		}
	} else if (f & BERTH_TCP_ACK) {
		if ((!reply && state == BERTH_CT_SYN_RECV) ||
		    (reply && state == BERTH_CT_ESTABLISHED && !(e->flags & BERTH_CT_ASSURED)))
			berth_ct_move(e, berth_ct_partner(e), BERTH_CT_ESTABLISHED, 1);
	}
	return 0;
}

/*
 * Account a packet of this half's direction and move the flow's state (see
 * top). Returns 0, or BERTH_DROP_CT_INVALID for a packet conntrack refuses
 * (then nothing was changed).
 */
static __always_inline __u32 berth_ct_seen(struct berth_ct_entry *e, const struct berth_l4 *p, __u32 len)
{
	if (p->proto == IPPROTO_TCP) {
		if (berth_ct_tcp_steady(e, p)) {
			berth_ct_track(e, p, e->tcp_flags_seen);
		} else {
			__u32 reason = berth_ct_tcp(e, p);

			if (reason)
				return reason;
		}
	} else if ((e->flags & (BERTH_CT_REPLY | BERTH_CT_ASSURED)) == BERTH_CT_REPLY) {
		/* UDP, ICMP echo: the first reply */
		berth_ct_move(e, berth_ct_partner(e), BERTH_CT_ESTABLISHED, 1);
	}
	e->last_seen_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, len);
	return 0;
}

/* The state a flow starts in, from its first packet (see top). */
static __always_inline __u8 berth_ct_first_state(const struct berth_l4 *p)
{
	__u8 f = p->tcp_flags;

	if (p->proto != IPPROTO_TCP)
		return BERTH_CT_NEW;
	if (f & BERTH_TCP_RST)
		return BERTH_CT_CLOSED;
	if ((f & (BERTH_TCP_SYN | BERTH_TCP_ACK)) == BERTH_TCP_SYN)
		return BERTH_CT_SYN_SENT;
	if (f & BERTH_TCP_FIN)
		return BERTH_CT_CLOSING;
	return BERTH_CT_ESTABLISHED;
}

/* Fill the bookkeeping of a fresh half for its flow's first packet. */
static __always_inline void berth_ct_init(struct berth_ct_entry *e, __u64 now, __u8 flags, __u8 state)
{
	e->created_ns = now;
	e->last_seen_ns = now;
	e->packets = 0;
	e->bytes = 0;
	e->state = state;
	e->flags = flags;
	e->tcp_flags_seen = 0;
	e->pad = 0;
	e->tcp_end = 0;
	e->tcp_ack = 0;
	e->tcp_win = 0;
	e->tcp_wscale = 0;
	e->pad2 = 0;
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

/* Both halves of a new flow opened by packet p, stamped with one clock reading. */
static __always_inline void berth_ct_init_pair(struct berth_ct_entry *orig, struct berth_ct_entry *reply, __u8 flags,
					       const struct berth_l4 *p)
{
	__u64 now = bpf_ktime_get_ns();
	__u8 state = berth_ct_first_state(p);

	berth_ct_init(orig, now, flags, state);
	berth_ct_init(reply, now, flags | BERTH_CT_REPLY, state);
}

/*
 * Insert one half. 0, -EEXIST (key taken), or -E2BIG/-ENOMEM (the table is
 * full, and no unassured flow could be evicted to make room).
 */
static __always_inline int berth_ct_insert(const struct berth_ct_key *k, const struct berth_ct_entry *e)
{
	int ret = bpf_map_update_elem(&berth_ct, k, e, BPF_NOEXIST);
	__u32 i;

	for (i = 0; i < BERTH_CT_EVICT_TRIES && (ret == -E2BIG || ret == -ENOMEM); i++) {
		if (!berth_ct_evict_oldest())
			break;
		ret = bpf_map_update_elem(&berth_ct, k, e, BPF_NOEXIST);
	}
	return ret;
}

/*
 * Second step of a pair: insert the orig half once the reply half is in,
 * and record the flow. Returns the live orig half, or NULL with *reason set.
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
		berth_ct_record(okey, orig->created_ns);
	}
	{
		struct berth_ct_entry *e = bpf_map_lookup_elem(&berth_ct, okey);

		if (!e)
			*reason = BERTH_DROP_NO_ENDPOINT;
		return e;
	}
}

#endif
