/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * NAT66 (issue 12): the IPv6 twin of lib/nat.h and lib/frag.h's keys and
 * rewrites, for the packets lib/ipv6.h summarised (struct berth_l6).
 *
 *   - Keys: berth_ct_key6_of fills a berth_ct_key from berth_l6's 16-byte
 *     addresses (family BERTH_AF_INET6); berth_frag6_key_of a berth_frag_key
 *     with the fragment header's 32-bit id (host byte order).
 *   - ICMPv6 echo (128/129) is tracked like ICMP echo: the identifier is
 *     both ports (lib/ipv6.h sets sport = dport = id).
 *   - The rewrite (berth_nat6_apply): IPv6 has no header checksum, but the
 *     pseudo-header of TCP, UDP and ICMPv6 (unlike ICMP) covers both
 *     addresses: every address change goes into the upper-layer checksum as
 *     a pseudo-header delta (BPF_F_PSEUDO_HDR: right for CHECKSUM_PARTIAL
 *     too). DCCP and UDP-Lite are not translated (lib/ipv6.h gives them no
 *     ports: a masqueraded one is refused). The ports (or the echo
 *     identifier, which is plain data of the ICMPv6 checksum) follow. The hop
 *     limit of a routed packet is decremented (no checksum covers it).
 *   - A UDP checksum of 0 is invalid over IPv6 (RFC 8200 8.1): such a
 *     datagram is never translated (berth_nat6_udp_zero: the callers drop it
 *     MALFORMED) rather than given a checksum the sender never computed.
 *   - A later fragment (no upper-layer header) gets its addresses only
 *     (berth_nat6_frag_apply): the upper-layer checksum lies in the first
 *     fragment, whose delta covered the whole datagram.
 *   - ICMPv6 errors (1-4) quoting a translated packet are translated back
 *     (berth_nat6_icmp_error), as berth_nat_icmp_error does for IPv4.
 */
#ifndef BERTH_LIB_NAT6_H
#define BERTH_LIB_NAT6_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/addr.h"
#include "lib/csum.h"
#include "lib/ipv6.h"
#include "lib/conntrack.h"
#include "lib/frag.h"
#include "lib/parse.h"

/*
 * Slot 0: the packet's struct berth_l6, off the BPF stack (the v6 paths'
 * frames and the parser's would not fit in 512 bytes with it). Per CPU, not
 * pinned, never read by user space; its value type is in berth_contract.h,
 * as every map's is.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct berth_l6);
} berth_l6_scratch SEC(".maps");

static __always_inline struct berth_l6 *berth_l6_buf(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&berth_l6_scratch, &zero);
}

/*
 * Parse the Ethernet + IPv6 frame of skb into *p (lib/ipv6.h). Returns an
 * enum berth_v6_status; BERTH_V6_NONLINEAR (a header past the linear data)
 * is the caller's to pass: parsing again after a pull would double the
 * verifier's cost of the walk.
 */
static __noinline __attribute__((unused)) int berth_nat6_parse(struct __sk_buff *skb, struct berth_l6 *p)
{
	struct berth_cursor c;
	struct ipv6hdr *ip6h;
	__u32 why;

	berth_cursor_init_skb(&c, skb);
	if (!berth_parse_eth(&c))
		return BERTH_V6_MALFORMED;
	ip6h = berth_parse_ipv6_why(&c, &why);
	if (!ip6h)
		return (int)why;
	return berth_parse_l6(&c, c.start, ip6h, p);
}

#define BERTH_IP6_OFF_HOPLIMIT 7
#define BERTH_IP6_OFF_SADDR 8
#define BERTH_IP6_OFF_DADDR 24

static __always_inline void berth_ct_key6_of(struct berth_ct_key *k, const struct berth_l6 *p)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->saddr, p->saddr, 16);
	__builtin_memcpy(k->daddr, p->daddr, 16);
	k->sport = p->l4.sport;
	k->dport = p->l4.dport;
	k->proto = p->l4.proto;
	k->family = BERTH_AF_INET6;
}

/* The half of the flow p belongs to (its tuple as it arrives), NULL if none. */
static __always_inline struct berth_ct_entry *berth_ct_lookup6(const struct berth_l6 *p)
{
	struct berth_ct_keybuf *kb = berth_ct_keybuf();

	if (!kb)
		return NULL;
	berth_ct_key6_of(&kb->lookup, p);
	return bpf_map_lookup_elem(&berth_ct, &kb->lookup);
}

/* TCP, UDP with ports, ICMPv6 echo: a tuple conntrack keeps. */
static __always_inline int berth_l6_tracked(const struct berth_l6 *p)
{
	return p->l4.has_ports && (p->l4.proto == BERTH_NH_TCP || p->l4.proto == BERTH_NH_UDP ||
				   (p->l4.proto == BERTH_NH_ICMP && berth_icmp6_is_echo(p->l4.icmp_type)));
}

/* --- fragments ------------------------------------------------------------- */

static __always_inline void berth_frag6_key_of(const struct berth_l6 *p, struct berth_frag_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->saddr, p->saddr, 16);
	__builtin_memcpy(k->daddr, p->daddr, 16);
	k->id = bpf_ntohl(p->frag_id);
	k->proto = p->l4.proto;
	k->family = BERTH_AF_INET6;
}

/* A first fragment about to be translated: its ports, for the later ones. */
static __always_inline void berth_frag6_record(const struct berth_l6 *p)
{
	struct berth_frag_key k;
	struct berth_frag_ports v;

	if (p->l4.frag != BERTH_FRAG_FIRST || !p->l4.has_ports)
		return;
	berth_frag6_key_of(p, &k);
	v.sport = p->l4.sport;
	v.dport = p->l4.dport;
	bpf_map_update_elem(&berth_frag, &k, &v, BPF_ANY);
}

/* A later fragment: the ports its first fragment recorded, into p (has_ports stays 0). 1 when found. */
static __always_inline int berth_frag6_ports_of(struct berth_l6 *p)
{
	struct berth_frag_key k;
	struct berth_frag_ports *v;

	if (p->l4.frag != BERTH_FRAG_LATER)
		return 0;
	berth_frag6_key_of(p, &k);
	v = bpf_map_lookup_elem(&berth_frag, &k);
	if (!v)
		return 0;
	p->l4.sport = v->sport;
	p->l4.dport = v->dport;
	return 1;
}

/* --- the rewrite ------------------------------------------------------------- */

/* A UDP datagram (whole or first fragment) whose checksum is 0: invalid over IPv6. -1 when unreadable. */
static __always_inline int berth_nat6_udp_zero(struct __sk_buff *skb, const struct berth_l6 *p)
{
	__u16 c;

	if (p->l4.proto != BERTH_NH_UDP || p->l4.frag == BERTH_FRAG_LATER || !p->l4.csum_off)
		return 0;
	if (bpf_skb_load_bytes(skb, p->l4.csum_off, &c, 2) < 0)
		return -1;
	return c == 0;
}

/*
 * Rewrite the 16-byte address at off from `from` to `to`; csum_off (0: none)
 * takes the delta, as a pseudo-header field when pseudo is set.
 */
static __always_inline int berth_set_addr6(struct __sk_buff *skb, __u32 off, __u32 csum_off, __u64 flags, int pseudo,
					   const __be32 *from, const __be32 *to)
{
	__be32 f[4], t[4];
	__s64 diff;
	int ret;

	if (berth_addr_eq(from, to))
		return 0;
	berth_addr_copy(f, from);
	berth_addr_copy(t, to);
	if (csum_off) {
		diff = bpf_csum_diff(f, 16, t, 16, 0);
		if (diff < 0)
			return (int)diff;
		ret = bpf_l4_csum_replace(skb, csum_off, 0, (__u32)diff, (pseudo ? BPF_F_PSEUDO_HDR : 0) | flags);
		if (ret < 0)
			return ret;
	}
	return bpf_skb_store_bytes(skb, off, t, 16, 0);
}

/* Decrement the hop limit of a routed packet (when above 1). No checksum covers it. */
static __always_inline int berth_dec_hoplimit(struct __sk_buff *skb, const struct berth_l6 *p)
{
	__u8 h = p->hop_limit;

	if (h <= 1)
		return 0;
	h -= 1;
	return bpf_skb_store_bytes(skb, p->l4.l3_off + BERTH_IP6_OFF_HOPLIMIT, &h, 1, 0);
}

/*
 * Rewrite the packet p describes (as parsed) to the tuple `to` (an IPv6
 * key): addresses, ports or the echo identifier, the upper-layer checksum;
 * routed: the hop limit too. 0, or negative on a helper error.
 */
static __noinline __attribute__((unused)) int berth_nat6_apply(struct __sk_buff *skb, const struct berth_l6 *p, const struct berth_ct_key *to, int routed)
{
	__u32 l3 = p->l4.l3_off;
	__u32 csum = p->l4.csum_off;
	__u8 proto = p->l4.proto;
	__u64 f = proto == BERTH_NH_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__be32 sa[4], da[4];
	int ret;

	__builtin_memcpy(sa, p->saddr, 16);
	__builtin_memcpy(da, p->daddr, 16);
	ret = berth_set_addr6(skb, l3 + BERTH_IP6_OFF_SADDR, csum, f, 1, sa, to->saddr);
	if (ret < 0)
		return ret;
	ret = berth_set_addr6(skb, l3 + BERTH_IP6_OFF_DADDR, csum, f, 1, da, to->daddr);
	if (ret < 0)
		return ret;
	if (proto == BERTH_NH_ICMP) {
		ret = berth_set_be16(skb, p->l4.l4_off + 4, csum, 0, p->l4.sport, to->sport);
	} else {
		ret = berth_set_be16(skb, p->l4.l4_off, csum, f, p->l4.sport, to->sport);
		if (ret < 0)
			return ret;
		ret = berth_set_be16(skb, p->l4.l4_off + 2, csum, f, p->l4.dport, to->dport);
	}
	if (ret < 0)
		return ret;
	if (routed)
		ret = berth_dec_hoplimit(skb, p);
	return ret;
}

/* A later fragment: its addresses to to's (no checksum in it covers them), the hop limit decremented. */
static __noinline __attribute__((unused)) int berth_nat6_frag_apply(struct __sk_buff *skb, const struct berth_l6 *p, const struct berth_ct_key *to)
{
	__be32 sa[4], da[4];
	int ret;

	__builtin_memcpy(sa, p->saddr, 16);
	__builtin_memcpy(da, p->daddr, 16);
	ret = berth_set_addr6(skb, p->l4.l3_off + BERTH_IP6_OFF_SADDR, 0, 0, 0, sa, to->saddr);
	if (ret < 0)
		return ret;
	ret = berth_set_addr6(skb, p->l4.l3_off + BERTH_IP6_OFF_DADDR, 0, 0, 0, da, to->daddr);
	if (ret < 0)
		return ret;
	return berth_dec_hoplimit(skb, p);
}

/* Rewrite a translated packet (whole, first or later fragment) per the half e. */
static __always_inline int berth_nat6_out(struct __sk_buff *skb, const struct berth_l6 *p, const struct berth_ct_entry *e)
{
	if (p->l4.frag == BERTH_FRAG_LATER)
		return berth_nat6_frag_apply(skb, p, &e->rewrite);
	berth_frag6_record(p);
	return berth_nat6_apply(skb, p, &e->rewrite, 1);
}

/* --- ICMPv6 errors ------------------------------------------------------------- */

/*
 * An ICMPv6 error (1 destination unreachable, 2 packet too big, 3 time
 * exceeded, 4 parameter problem) whose quoted packet (an IPv6 header right
 * followed by TCP, UDP or an ICMPv6 echo: a quoted extension header is not
 * berth's) left berth translated with tuple Q. The half it belongs to is
 * keyed by Q reversed; that half's rewrite R says where it goes. Rewrites:
 * the outer destination -> R.daddr, the outer source -> R.saddr only when
 * the error came from the quoted packet's destination itself (a router keeps
 * its own address); the quoted addresses and ports (or echo identifier) ->
 * R reversed. The ICMPv6 checksum takes the outer addresses as pseudo-header
 * deltas and the quoted bytes as plain data; the quoted transport checksum
 * is left as it is (no receiver verifies it). Returns the half to send it
 * with, NULL when the error is not berth's (nothing written), or sets *bad on
 * a helper failure.
 */
static __noinline __attribute__((unused)) struct berth_ct_entry *berth_nat6_icmp_error(struct __sk_buff *skb, const struct berth_l6 *p, int *bad)
{
	__u32 q = p->quote_off, ql4, icsum = p->l4.l4_off + 2;
	struct berth_ct_keybuf *kb = berth_ct_keybuf();
	struct berth_ct_entry *e;
	__be32 qs[4], qd[4], osrc[4], odst[4];
	__be16 ports[4];
	__u8 qh[8];
	__u8 qproto;
	int ret;

	*bad = 0;
	if (!kb || !q || p->l4.frag != BERTH_FRAG_NONE || p->l4.proto != BERTH_NH_ICMP ||
	    !berth_icmp6_is_error(p->l4.icmp_type))
		return NULL;
	ql4 = q + BERTH_IPV6_HLEN;
	if (ql4 + sizeof(ports) > p->l4.l3_end)
		return NULL;
	if (bpf_skb_load_bytes(skb, q, qh, sizeof(qh)) < 0 || (qh[0] >> 4) != 6)
		return NULL;
	qproto = qh[6];
	if (bpf_skb_load_bytes(skb, q + BERTH_IP6_OFF_SADDR, qs, 16) < 0 ||
	    bpf_skb_load_bytes(skb, q + BERTH_IP6_OFF_DADDR, qd, 16) < 0 ||
	    bpf_skb_load_bytes(skb, ql4, ports, sizeof(ports)) < 0)
		return NULL;
	__builtin_memset(&kb->lookup, 0, sizeof(kb->lookup));
	berth_addr_copy(kb->lookup.saddr, qd);
	berth_addr_copy(kb->lookup.daddr, qs);
	kb->lookup.proto = qproto;
	kb->lookup.family = BERTH_AF_INET6;
	if (qproto == BERTH_NH_TCP || qproto == BERTH_NH_UDP) {
		kb->lookup.sport = ports[1];
		kb->lookup.dport = ports[0];
	} else if (qproto == BERTH_NH_ICMP) {
		if (!berth_icmp6_is_echo(((__u8 *)ports)[0]))
			return NULL;
		kb->lookup.sport = ports[2];
		kb->lookup.dport = ports[2];
	} else {
		return NULL;
	}
	e = bpf_map_lookup_elem(&berth_ct, &kb->lookup);
	if (!e || (e->flags & BERTH_CT_ROUTED))
		return NULL;

	/* outer header: pseudo-header deltas */
	__builtin_memcpy(osrc, p->saddr, 16);
	__builtin_memcpy(odst, p->daddr, 16);
	ret = 0;
	if (berth_addr_eq(osrc, qd))
		ret = berth_set_addr6(skb, p->l4.l3_off + BERTH_IP6_OFF_SADDR, icsum, 0, 1, osrc, e->rewrite.saddr);
	if (ret >= 0)
		ret = berth_set_addr6(skb, p->l4.l3_off + BERTH_IP6_OFF_DADDR, icsum, 0, 1, odst, e->rewrite.daddr);
	/* the quoted packet is R reversed: plain data of the ICMPv6 checksum */
	if (ret >= 0)
		ret = berth_set_addr6(skb, q + BERTH_IP6_OFF_SADDR, icsum, 0, 0, qs, e->rewrite.daddr);
	if (ret >= 0)
		ret = berth_set_addr6(skb, q + BERTH_IP6_OFF_DADDR, icsum, 0, 0, qd, e->rewrite.saddr);
	if (qproto == BERTH_NH_ICMP) {
		if (ret >= 0)
			ret = berth_set_be16(skb, ql4 + 4, icsum, 0, ports[2], e->rewrite.sport);
	} else {
		if (ret >= 0)
			ret = berth_set_be16(skb, ql4, icsum, 0, ports[0], e->rewrite.dport);
		if (ret >= 0)
			ret = berth_set_be16(skb, ql4 + 2, icsum, 0, ports[1], e->rewrite.sport);
	}
	if (ret < 0) {
		*bad = 1;
		return NULL;
	}
	return e;
}

#endif
