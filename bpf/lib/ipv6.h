/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IPv6 parsing for the dual-stack datapath (issue 12, part 1): the fixed
 * header as the kernel's receive path accepts it, a bounded walk over the
 * extension headers, and the upper-layer summary NAT and conntrack need.
 *
 * Decision: a sibling struct, struct berth_l6, that EMBEDS a struct berth_l4
 * for everything that does not depend on the address family, rather than a
 * family-tagged berth_l4 with 16-byte addresses. Why:
 *   - the upper-layer fields (ports or echo id, proto, frag state, TCP
 *     flags/seq/ack/end/window, ICMP type, l3/l4/checksum offsets, l3_end)
 *     mean exactly the same for both families, so the TCP state machine and
 *     the per-half bookkeeping of lib/conntrack.h (berth_ct_tcp,
 *     berth_ct_seen, which read only those fields) can run on &p->l4
 *     unchanged, and there is one definition of what they mean;
 *   - berth_l4 stays 48 bytes on the IPv4 paths (their stack is near the
 *     verifier's 512 bytes, and others are editing them): no IPv4 code
 *     changes or grows;
 *   - what does depend on the family is the address: the conntrack, NAT and
 *     fragment KEYS. Issue 12 wants those keyed for both families with ONE
 *     contract: in berth_contract.h the key gains a family and 16-byte
 *     addresses (IPv4 as ::ffff:a.b.c.d), filled from berth_l4's __be32 or
 *     from berth_l6's 16 bytes by one key function per family. That change
 *     belongs with the maps (part 2); this header fixes the summary only.
 * In the embedded l4, saddr and daddr are 0 (never an IPv4 tuple: a helper
 * that reads them on an IPv6 packet finds no flow) and l3_off is the IPv6
 * header's offset; proto is the UPPER-LAYER protocol (after the extension
 * headers), l4_off its header's offset and l3_end the datagram's end
 * (40 + payload_len): no header past it is read.
 *
 * What is accepted (berth_parse_ipv6), as ip6_rcv_core does: version 6, the
 * payload within the packet, a source that is not multicast, no loopback
 * address (berth never runs on lo), a destination that is not multicast of
 * scope 0 (reserved) or 1 (interface-local). payload_len 0 with a hop-by-hop
 * header is a jumbogram: refused (BERTH_V6_UNSUPPORTED: berth reads no
 * jumbo option; a jumbogram needs more than 64 KiB, which no berth interface
 * carries unsegmented). payload_len 0 otherwise is an empty payload, except
 * on a GSO packet (BIG TCP: the rest of the packet, as for IPv4).
 *
 * The walk (berth_parse_l6) follows ipv6_skip_exthdr: hop-by-hop, routing,
 * destination options (length (n+1)*8), fragment (8) and AH (length (n+2)*4)
 * are extension headers, at most BERTH_IPV6_MAX_EXT of them (one more is
 * BERTH_V6_UNSUPPORTED: berth's choice, the kernel has no limit); the walk
 * stops at the first other next header (TCP, UDP, ICMPv6, ESP, anything) or
 * at no-next-header (59). It is judged as the receiving stack judges it
 * (local delivery, which NAT's translated flows reach): BERTH_V6_MALFORMED
 * for a hop-by-hop header anywhere but first, a header past the datagram's
 * end, and fragments that ip6_frag_queue / ipv6_frag_rcv refuse (empty, past
 * 65535 bytes, not a multiple of 8 with M set, a first fragment without its
 * whole upper-layer header: ipv6frag_thdr_truncated). A second fragment
 * header is BERTH_V6_UNSUPPORTED (which fragment would a later one belong
 * to?), judged after the walk, so a malformed header met first wins (a
 * branch on state the walk carries would multiply the verifier's states). An atomic fragment (offset 0, no M: RFC 6946) is a whole datagram;
 * a first fragment is walked on to its upper-layer header; a later one
 * stops at its fragment header (proto = its next header, no ports).
 * Not judged here (the datapath's to decide): the options inside hop-by-hop
 * and destination options headers (not parsed), a routing header's type
 * and addresses (BERTH_L6_RT_SEGS says that daddr is not the final one),
 * a UDP checksum of 0 (invalid over IPv6: the summary reports csum_off only).
 *
 * Cursor contract of lib/parse.h: NULL / an error leaves the cursor where
 * it was; reads only. Every header is read within the linear data: one that
 * lies in the packet but past it is BERTH_V6_NONLINEAR (the caller may pull
 * and parse again).
 */
#ifndef BERTH_LIB_IPV6_H
#define BERTH_LIB_IPV6_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/parse.h"
#include "lib/l4.h"

#define BERTH_IPV6_HLEN 40
#define BERTH_IPV6_MAX_EXT 8

/* Next-header values (linux/ipv6.h NEXTHDR_*, linux/in6.h) */
#define BERTH_NH_HOP 0
#define BERTH_NH_TCP 6
#define BERTH_NH_UDP 17
#define BERTH_NH_ROUTING 43
#define BERTH_NH_FRAGMENT 44
#define BERTH_NH_ESP 50
#define BERTH_NH_AUTH 51
#define BERTH_NH_ICMP 58
#define BERTH_NH_NONE 59
#define BERTH_NH_DEST 60

/* ICMPv6 types (linux/icmpv6.h) */
#define BERTH_ICMP6_DEST_UNREACH 1
#define BERTH_ICMP6_PKT_TOOBIG 2
#define BERTH_ICMP6_TIME_EXCEED 3
#define BERTH_ICMP6_PARAMPROB 4
#define BERTH_ICMP6_ECHO_REQUEST 128
#define BERTH_ICMP6_ECHO_REPLY 129
#define BERTH_ICMP6_MLD_QUERY 130
#define BERTH_ICMP6_MLD_REPORT 131
#define BERTH_ICMP6_MLD_DONE 132
#define BERTH_ICMP6_ROUTER_SOLICIT 133
#define BERTH_ICMP6_ROUTER_ADVERT 134
#define BERTH_ICMP6_NEIGH_SOLICIT 135
#define BERTH_ICMP6_NEIGH_ADVERT 136
#define BERTH_ICMP6_REDIRECT 137
#define BERTH_ICMP6_MLD2_REPORT 143

#define BERTH_ICMP6_HLEN 8

enum berth_v6_status {
	BERTH_V6_OK = 0,
	BERTH_V6_MALFORMED = 1,   /* the kernel's receive path would drop it */
	BERTH_V6_UNSUPPORTED = 2, /* berth refuses it by design (jumbogram, too many or repeated headers) */
	BERTH_V6_NONLINEAR = 3,   /* a header lies in the packet but past the linear data */
};

/* berth_l6.flags: which extension headers the walk met */
#define BERTH_L6_HOP 0x01
#define BERTH_L6_ROUTING 0x02
#define BERTH_L6_RT_SEGS 0x04     /* a routing header with segments left: daddr is not the final destination */
#define BERTH_L6_DEST 0x08
#define BERTH_L6_FRAG_HDR 0x10    /* a fragment header (atomic ones too) */
#define BERTH_L6_AUTH 0x20
#define BERTH_L6_NO_NEXT 0x40     /* the chain ended in no-next-header (59) */

/* struct berth_l6 (the summary; slot 0 of berth_l6_scratch, lib/nat6.h): berth_contract.h */

/* --- addresses ------------------------------------------------------------ */

static __always_inline int berth_ip6_is_multicast(const __u8 *a)
{
	return a[0] == 0xff;
}

/* A multicast address's scope (RFC 4291 2.7): 1 interface-, 2 link-, 5 site-local, 14 global. */
static __always_inline __u8 berth_ip6_mc_scope(const __u8 *a)
{
	return a[1] & 0x0f;
}

/* fe80::/10 */
static __always_inline int berth_ip6_is_linklocal(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

static __always_inline int berth_ip6_is_zero_upto(const __u8 *a, int n)
{
	int i;

#pragma unroll
	for (i = 0; i < 15; i++)
		if (i < n && a[i])
			return 0;
	return 1;
}

/* :: */
static __always_inline int berth_ip6_is_unspecified(const __u8 *a)
{
	return berth_ip6_is_zero_upto(a, 15) && a[15] == 0;
}

/* ::1 */
static __always_inline int berth_ip6_is_loopback(const __u8 *a)
{
	return berth_ip6_is_zero_upto(a, 15) && a[15] == 1;
}

/* Never leaves the link: link-local unicast, or multicast of interface- or link-local scope. */
static __always_inline int berth_ip6_is_link_scope(const __u8 *a)
{
	if (berth_ip6_is_multicast(a))
		return berth_ip6_mc_scope(a) <= 2;
	return berth_ip6_is_linklocal(a);
}

/* --- ICMPv6 ----------------------------------------------------------------- */

static __always_inline int berth_icmp6_is_echo(__u8 type)
{
	return type == BERTH_ICMP6_ECHO_REQUEST || type == BERTH_ICMP6_ECHO_REPLY;
}

/* Error messages (RFC 4443): they quote the offending packet after their 8-byte header. */
static __always_inline int berth_icmp6_is_error(__u8 type)
{
	return type >= BERTH_ICMP6_DEST_UNREACH && type <= BERTH_ICMP6_PARAMPROB;
}

/* Neighbour discovery (RFC 4861): router and neighbour solicitation and advertisement, redirect. */
static __always_inline int berth_icmp6_is_ndp(__u8 type)
{
	return type >= BERTH_ICMP6_ROUTER_SOLICIT && type <= BERTH_ICMP6_REDIRECT;
}

/* Multicast listener discovery (RFC 2710, RFC 3810): query, reports, done. */
static __always_inline int berth_icmp6_is_mld(__u8 type)
{
	return (type >= BERTH_ICMP6_MLD_QUERY && type <= BERTH_ICMP6_MLD_DONE) || type == BERTH_ICMP6_MLD2_REPORT;
}

/* A whole (unfragmented) ICMPv6 message of type t in p: its 8-byte header was read. */
static __always_inline int berth_l6_icmp_whole(const struct berth_l6 *p)
{
	return p->l4.proto == BERTH_NH_ICMP && p->l4.frag == BERTH_FRAG_NONE && p->l4.icmp_type != 0;
}

/* NDP as RFC 4861 7.1.1/6.1 lets a node accept it: hop limit 255 (so from the link itself), code 0. */
static __always_inline int berth_l6_is_ndp(const struct berth_l6 *p)
{
	return berth_l6_icmp_whole(p) && berth_icmp6_is_ndp(p->l4.icmp_type) && p->hop_limit == 255 &&
	       p->icmp_code == 0;
}

/* MLD as RFC 3810 5 accepts it: a link-local (or, for a report, the unspecified) source, hop limit 1. */
static __always_inline int berth_l6_is_mld(const struct berth_l6 *p)
{
	if (!berth_l6_icmp_whole(p) || !berth_icmp6_is_mld(p->l4.icmp_type) || p->hop_limit != 1)
		return 0;
	return berth_ip6_is_linklocal(p->saddr) ||
	       (p->l4.icmp_type != BERTH_ICMP6_MLD_QUERY && berth_ip6_is_unspecified(p->saddr));
}

/* An ICMPv6 error: the offset of the IPv6 header it quotes, 0 when it is no error. */
static __always_inline __u32 berth_l6_quote_off(const struct berth_l6 *p)
{
	return p->quote_off;
}

/* --- the fixed header ------------------------------------------------------- */

/*
 * The fixed header, as ip6_rcv_core accepts it; *why gets the refusal.
 * On success the cursor is past it and c->dgram_end is the datagram's end.
 */
static __always_inline struct ipv6hdr *berth_parse_ipv6_why(struct berth_cursor *c, __u32 *why)
{
	struct ipv6hdr *ip6h = c->pos;
	const __u8 *b = c->pos;
	__u32 off, plen;

	if ((void *)(ip6h + 1) > c->end) {
		off = (__u32)(c->pos - c->start);
		*why = off + BERTH_IPV6_HLEN > c->len ? BERTH_V6_MALFORMED : BERTH_V6_NONLINEAR;
		return NULL;
	}
	*why = BERTH_V6_MALFORMED;
	if ((b[0] >> 4) != 6)
		return NULL;
	if (berth_ip6_is_multicast(b + 8))
		return NULL;
	if (berth_ip6_is_loopback(b + 8) || berth_ip6_is_loopback(b + 24))
		return NULL;
	if (berth_ip6_is_multicast(b + 24) && berth_ip6_mc_scope(b + 24) <= 1)
		return NULL;
	off = (__u32)(c->pos - c->start);
	plen = bpf_ntohs(ip6h->payload_len);
	if (plen == 0) {
		if (c->gso)
			plen = c->len - off - BERTH_IPV6_HLEN;
		else if (ip6h->nexthdr == BERTH_NH_HOP) {
			*why = BERTH_V6_UNSUPPORTED;
			return NULL;
		}
	}
	if (off + BERTH_IPV6_HLEN + plen > c->len)
		return NULL;
	*why = BERTH_V6_OK;
	c->dgram_end = off + BERTH_IPV6_HLEN + plen;
	c->pos = ip6h + 1;
	return ip6h;
}

static __always_inline struct ipv6hdr *berth_parse_ipv6(struct berth_cursor *c)
{
	__u32 why;

	return berth_parse_ipv6_why(c, &why);
}

/* --- the extension-header walk ----------------------------------------------- */

static __always_inline int berth_ipv6_is_ext(__u8 nh)
{
	return nh == BERTH_NH_HOP || nh == BERTH_NH_ROUTING || nh == BERTH_NH_FRAGMENT || nh == BERTH_NH_AUTH ||
	       nh == BERTH_NH_DEST;
}

/* The upper-layer header a first fragment must hold whole (ipv6frag_thdr_truncated). */
static __always_inline __u32 berth_ipv6_upper_min(__u8 nh)
{
	if (nh == BERTH_NH_TCP)
		return sizeof(struct tcphdr);
	if (nh == BERTH_NH_UDP)
		return sizeof(struct udphdr);
	if (nh == BERTH_NH_ICMP)
		return BERTH_ICMP6_HLEN;
	if (nh == BERTH_NH_NONE)
		return 0;
	return 1;
}

/*
 * Fill *p from the IPv6 header at ip6h that berth_parse_ipv6 accepted (the
 * cursor just past it, c->dgram_end set; start = the packet's start, for
 * offsets). Returns an enum berth_v6_status: on BERTH_V6_OK *p is the
 * summary and the cursor is past the transport header when l4.has_ports, at
 * the upper-layer header otherwise; on anything else the cursor is unchanged
 * and *p is not to be used.
 */
static __always_inline int berth_parse_l6(struct berth_cursor *c, void *start, struct ipv6hdr *ip6h, struct berth_l6 *p)
{
	void *pos = c->pos;
	__u32 off = (__u32)(c->pos - start);
	__u32 end = c->dgram_end;
	__u8 nh = ip6h->nexthdr;
	__u32 nfrag = 0;
	__u32 i;

	__builtin_memset(p, 0, sizeof(*p));
	__builtin_memcpy(p->saddr, &ip6h->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6h->daddr, 16);
	p->hop_limit = ip6h->hop_limit;
	p->l4.l3_off = (__u32)((void *)ip6h - start);
	p->l4.l3_end = end;

#pragma unroll
	for (i = 0; i <= BERTH_IPV6_MAX_EXT; i++) {
		const __u8 *h = pos;
		__u32 len;

		if (!berth_ipv6_is_ext(nh))
			break;
		if (i == BERTH_IPV6_MAX_EXT)
			return BERTH_V6_UNSUPPORTED;
		if (nh == BERTH_NH_HOP && i != 0)
			return BERTH_V6_MALFORMED;
		if (off + 8 > end)
			return BERTH_V6_MALFORMED;
		if (pos + 8 > c->end)
			return BERTH_V6_NONLINEAR;
		if (nh == BERTH_NH_FRAGMENT)
			len = 8;
		else if (nh == BERTH_NH_AUTH)
			len = ((__u32)h[1] + 2) * 4;
		else
			len = ((__u32)h[1] + 1) * 8;
		if (off + len > end)
			return BERTH_V6_MALFORMED;
		if (pos + len > c->end)
			return BERTH_V6_NONLINEAR;

		if (nh == BERTH_NH_HOP) {
			p->flags |= BERTH_L6_HOP;
		} else if (nh == BERTH_NH_ROUTING) {
			p->flags |= BERTH_L6_ROUTING;
			if (h[3])
				p->flags |= BERTH_L6_RT_SEGS;
		} else if (nh == BERTH_NH_DEST) {
			p->flags |= BERTH_L6_DEST;
		} else if (nh == BERTH_NH_AUTH) {
			p->flags |= BERTH_L6_AUTH;
		} else {
			__u16 fo = ((__u16)h[2] << 8) | h[3];
			__u32 fend;

			nfrag++; /* judged after the walk: no branch on state the walk carries */
			p->flags |= BERTH_L6_FRAG_HDR;
			p->frag_hdr_off = off;
			__builtin_memcpy(&p->frag_id, h + 4, 4);
			if (fo & 0xfff9) { /* offset or M: a real fragment */
				p->frag_off = fo & 0xfff8;
				fend = p->frag_off + (end - off - 8);
				if (fend == p->frag_off || fend > 65535 || ((fo & 1) && (fend & 7)))
					return BERTH_V6_MALFORMED;
				if (p->frag_off) {
					p->l4.frag = BERTH_FRAG_LATER;
					nh = h[0];
					off += 8;
					pos += 8;
					p->n_ext = i + 1;
					break;
				}
				p->l4.frag = BERTH_FRAG_FIRST;
			}
		}
		nh = h[0];
		off += len;
		pos += len;
		p->n_ext = i + 1;
	}

	if (nfrag > 1)
		return BERTH_V6_UNSUPPORTED;
	p->l4.proto = nh;
	p->l4.l4_off = off;
	if (nh == BERTH_NH_NONE)
		p->flags |= BERTH_L6_NO_NEXT;
	if (p->l4.frag == BERTH_FRAG_LATER)
		goto done;
	if (p->l4.frag == BERTH_FRAG_FIRST && off + berth_ipv6_upper_min(nh) > end)
		return BERTH_V6_MALFORMED;

	if (nh == BERTH_NH_TCP) {
		struct tcphdr *th = pos;
		__u32 data;
		__u8 f;

		if ((void *)(th + 1) > c->end || off + sizeof(*th) > end)
			goto done;
		p->l4.sport = th->source;
		p->l4.dport = th->dest;
		f = ((__u8 *)th)[13];
		p->l4.tcp_flags = f;
		p->l4.tcp_seq = bpf_ntohl(th->seq);
		p->l4.tcp_ack = bpf_ntohl(th->ack_seq);
		p->l4.tcp_win = bpf_ntohs(th->window);
		data = off + (__u32)(((__u8 *)th)[12] >> 4) * 4;
		p->l4.tcp_end = p->l4.tcp_seq + (end > data ? end - data : 0) + !!(f & BERTH_TCP_SYN) + !!(f & BERTH_TCP_FIN);
		p->l4.csum_off = off + offsetof(struct tcphdr, check);
		pos = th + 1;
	} else if (nh == BERTH_NH_UDP) {
		struct udphdr *uh = pos;

		if ((void *)(uh + 1) > c->end || off + sizeof(*uh) > end)
			goto done;
		p->l4.sport = uh->source;
		p->l4.dport = uh->dest;
		p->l4.csum_off = off + offsetof(struct udphdr, check);
		pos = uh + 1;
	} else if (nh == BERTH_NH_ICMP) {
		const __u8 *ih = pos;

		if (pos + BERTH_ICMP6_HLEN > c->end || off + BERTH_ICMP6_HLEN > end)
			goto done;
		p->l4.icmp_type = ih[0];
		p->icmp_code = ih[1];
		if (berth_icmp6_is_error(ih[0])) {
			p->quote_off = off + BERTH_ICMP6_HLEN;
			goto done;
		}
		if (!berth_icmp6_is_echo(ih[0]))
			goto done;
		__builtin_memcpy(&p->l4.sport, ih + 4, 2);
		p->l4.dport = p->l4.sport;
		p->l4.csum_off = off + 2;
		pos += BERTH_ICMP6_HLEN;
	} else {
		goto done;
	}
	p->l4.has_ports = 1;
done:
	c->pos = pos;
	return BERTH_V6_OK;
}

#endif
