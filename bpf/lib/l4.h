/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Transport parsing for NAT: the 5-tuple of an IPv4 packet and where its
 * ports and checksum sit, as offsets from skb->data / xdp->data so that the
 * rewrite helpers (which invalidate packet pointers) can use them later.
 *
 * Follows the cursor contract of lib/parse.h: called with the cursor just
 * past the IPv4 header (options included); on success the cursor is past the
 * transport header, on failure it is unchanged. Reads only.
 */
#ifndef BERTH_LIB_L4_H
#define BERTH_LIB_L4_H

#include "kernel.h"
#include "berth_contract.h"
#include "lib/parse.h"
#include "lib/tcpopt.h"

#define BERTH_IP_MF 0x2000
#define BERTH_IP_OFFSET 0x1fff

enum berth_frag {
	BERTH_FRAG_NONE = 0,  /* a whole datagram */
	BERTH_FRAG_FIRST = 1, /* offset 0, more fragments: carries the L4 header */
	BERTH_FRAG_LATER = 2, /* offset > 0: no L4 header at all */
};

/* struct berth_l4, the summary these parsers fill: berth_contract.h (it is part of
 * the berth_l6_scratch map's value, struct berth_l6). */

#define BERTH_TCP_FIN 0x01
#define BERTH_TCP_SYN 0x02
#define BERTH_TCP_RST 0x04
#define BERTH_TCP_ACK 0x10

#define BERTH_ICMP_ECHOREPLY 0
#define BERTH_ICMP_DEST_UNREACH 3
#define BERTH_ICMP_ECHO 8
#define BERTH_ICMP_TIME_EXCEEDED 11
#define BERTH_ICMP_PARAMETERPROB 12

/* Protocols whose checksum covers the IPv4 pseudo header besides TCP and
 * UDP, both at offset 6 of their header (the kernel's nf_nat_proto.c fixes
 * them too). SCTP's CRC32c covers no address. */
#define BERTH_IPPROTO_DCCP 33
#define BERTH_IPPROTO_UDPLITE 136
#define BERTH_PSEUDO_CSUM_OFF 6

static __always_inline int berth_proto_pseudo_csum(__u8 proto)
{
	return proto == BERTH_IPPROTO_DCCP || proto == BERTH_IPPROTO_UDPLITE;
}

static __always_inline int berth_icmp_is_echo(__u8 type)
{
	return type == BERTH_ICMP_ECHO || type == BERTH_ICMP_ECHOREPLY;
}

static __always_inline int berth_icmp_is_error(__u8 type)
{
	return type == BERTH_ICMP_DEST_UNREACH || type == BERTH_ICMP_TIME_EXCEEDED ||
	       type == BERTH_ICMP_PARAMETERPROB;
}

/*
 * Fill *p from an IPv4 header at iph (start = packet start, for offsets),
 * which berth_parse_ipv4 accepted (c->dgram_end set). A later fragment, a
 * transport header truncated or past the datagram's end (tot_len), or another
 * protocol leaves has_ports = 0. Another protocol than TCP, UDP and ICMP
 * sets generic instead, a later fragment's too (its tuple needs no transport
 * header), but not a DCCP or UDP-Lite header too short to hold its checksum.
 * Returns has_ports.
 */
static __always_inline int berth_parse_l4(struct berth_cursor *c, void *start, struct iphdr *iph, struct berth_l4 *p)
{
	__u16 frag = bpf_ntohs(iph->frag_off);

	p->saddr = iph->saddr;
	p->daddr = iph->daddr;
	p->sport = 0;
	p->dport = 0;
	p->proto = iph->protocol;
	p->has_ports = 0;
	p->tcp_flags = 0;
	p->icmp_type = 0;
	p->generic = 0;
	p->l3_off = (void *)iph - start;
	p->l4_off = c->pos - start;
	p->csum_off = 0;
	p->l3_end = c->dgram_end;
	p->tcp_seq = 0;
	p->tcp_ack = 0;
	p->tcp_end = 0;
	p->tcp_win = 0;
	p->tcp_wscale = 0;
	if (frag & BERTH_IP_OFFSET) {
		p->frag = BERTH_FRAG_LATER;
		p->generic = iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP && iph->protocol != IPPROTO_ICMP;
		return 0;
	}
	p->frag = (frag & BERTH_IP_MF) ? BERTH_FRAG_FIRST : BERTH_FRAG_NONE;

	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *th = c->pos;
		__u32 data;
		__u8 f;

		if ((void *)(th + 1) > c->end || p->l4_off + sizeof(*th) > p->l3_end)
			return 0;
		p->sport = th->source;
		p->dport = th->dest;
		f = ((__u8 *)th)[13];
		p->tcp_flags = f;
		p->tcp_seq = bpf_ntohl(th->seq);
		p->tcp_ack = bpf_ntohl(th->ack_seq);
		p->tcp_win = bpf_ntohs(th->window);
		data = p->l4_off + (__u32)(((__u8 *)th)[12] >> 4) * 4;
		p->tcp_end = p->tcp_seq + (p->l3_end > data ? p->l3_end - data : 0) + !!(f & BERTH_TCP_SYN) + !!(f & BERTH_TCP_FIN);
		if ((f & BERTH_TCP_SYN) && data > p->l4_off + sizeof(*th) && data <= p->l3_end)
			p->tcp_wscale = berth_tcp_wscale(th, c->end, data - p->l4_off - sizeof(*th));
		p->csum_off = p->l4_off + offsetof(struct tcphdr, check);
		c->pos = th + 1;
	} else if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *uh = c->pos;

		if ((void *)(uh + 1) > c->end || p->l4_off + sizeof(*uh) > p->l3_end)
			return 0;
		p->sport = uh->source;
		p->dport = uh->dest;
		p->csum_off = p->l4_off + offsetof(struct udphdr, check);
		c->pos = uh + 1;
	} else if (iph->protocol == IPPROTO_ICMP) {
		struct icmphdr *ih = c->pos;

		if ((void *)(ih + 1) > c->end || p->l4_off + sizeof(*ih) > p->l3_end)
			return 0;
		p->icmp_type = ih->type;
		if (!berth_icmp_is_echo(ih->type))
			return 0; /* errors are handled by lib/nat.h on their own */
		p->sport = ih->un.echo.id;
		p->dport = ih->un.echo.id;
		p->csum_off = p->l4_off + offsetof(struct icmphdr, checksum);
		c->pos = ih + 1;
	} else {
		/* GRE, SCTP, ESP, ...: no ports. A pseudo-header checksum must lie
		 * inside the datagram, to be fixed with the addresses. */
		if (berth_proto_pseudo_csum(iph->protocol)) {
			if (p->l4_off + BERTH_PSEUDO_CSUM_OFF + 2 > p->l3_end)
				return 0;
			p->csum_off = p->l4_off + BERTH_PSEUDO_CSUM_OFF;
		}
		p->generic = 1;
		return 0;
	}
	p->has_ports = 1;
	return 1;
}

/* The packet has a conntrack tuple: ports (TCP, UDP, ICMP echo) or the
 * generic one of another protocol (ports 0). */
static __always_inline int berth_l4_tracked(const struct berth_l4 *p)
{
	return p->has_ports || p->generic;
}

#endif
