/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Address translation: rewriting a packet to a conntrack entry's `rewrite`
 * tuple, sending it the way the entry says, choosing a source port for a new
 * source-translated flow, and translating ICMP errors that quote a
 * translated packet.
 */
#ifndef BERTH_LIB_NAT_H
#define BERTH_LIB_NAT_H

#include "kernel.h"
#include "lib/csum.h"
#include "lib/conntrack.h"
#include "lib/hostsock.h"

/* Hard bound on port tries, whatever the load-time setting says. */
#define BERTH_NAT_MAX_TRIES 128

struct berth_nat_cfg {
	__u16 port_min;   /* host byte order */
	__u16 port_max;
	__u32 tries;      /* random tries after the kept port; <= BERTH_NAT_MAX_TRIES */
};

/*
 * Rewrite the packet described by p (as parsed) to the tuple `to`: addresses,
 * ports (or the ICMP echo identifier) and the checksums. routed: the packet
 * crosses the host's routing (TTL decremented). 0 or negative on a helper error.
 */
static __always_inline int berth_nat_apply(struct __sk_buff *skb, const struct berth_l4 *p, const struct berth_ct_key *to, int routed)
{
	__u32 l3csum = p->l3_off + offsetof(struct iphdr, check);
	__u32 pseudo = p->proto == IPPROTO_ICMP ? 0 : p->csum_off;
	__u64 f = berth_l4_csum_flags(p->proto);
	int ret;

	ret = berth_set_addr(skb, p->l3_off + offsetof(struct iphdr, saddr), l3csum, pseudo, p->proto, p->saddr, berth_addr4(to->saddr));
	if (ret < 0)
		return ret;
	ret = berth_set_addr(skb, p->l3_off + offsetof(struct iphdr, daddr), l3csum, pseudo, p->proto, p->daddr, berth_addr4(to->daddr));
	if (ret < 0)
		return ret;
	if (p->proto == IPPROTO_ICMP) {
		ret = berth_set_be16(skb, p->l4_off + 4, p->csum_off, 0, p->sport, to->sport);
	} else {
		ret = berth_set_be16(skb, p->l4_off, p->csum_off, f, p->sport, to->sport);
		if (ret < 0)
			return ret;
		ret = berth_set_be16(skb, p->l4_off + 2, p->csum_off, f, p->dport, to->dport);
	}
	if (ret < 0)
		return ret;
	if (routed)
		ret = berth_dec_ttl(skb, p->l3_off);
	return ret;
}

/* Send a (translated) packet the way the entry says. A TC action. */
static __always_inline int berth_ct_redirect(struct __sk_buff *skb, const struct berth_ct_entry *e)
{
	void *data, *end;
	struct ethhdr *eth;

	if (e->out_kind == BERTH_OUT_NEIGH)
		return bpf_redirect_neigh(e->out_ifindex, NULL, 0, 0);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_SHOT;
	__builtin_memcpy(eth->h_dest, e->out_dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, e->out_smac, ETH_ALEN);
	if (e->out_kind == BERTH_OUT_PEER)
		return bpf_redirect_peer(e->out_ifindex, 0);
	return bpf_redirect(e->out_ifindex, 0);
}

/*
 * Create a source-translated flow (masquerade, hairpin). On entry:
 *   okey            the arriving tuple (the orig half's key);
 *   orig->rewrite   the leaving tuple, its sport the port to keep if free;
 *   reply           the complete reply half (its rewrite is okey reversed).
 * The reply half's key is orig->rewrite reversed, with the chosen port. The
 * kept port is tried first when it lies in [port_min, port_max], then up to
 * cfg->tries pseudo-random ports of that range. The range lies outside the
 * host's own ephemeral ports (the controller checks), so the host never
 * picks one of them for its own connections, and a kept port outside the
 * range (a container's own ephemeral port) is always replaced. A port whose
 * reply tuple a host socket owns (one bound there explicitly: lib/hostsock.h)
 * is skipped like one a flow holds. Never a translation that collides with a
 * live flow or a host socket: no free port is a drop (NAT_NO_PORT). Returns
 * the live orig half or NULL with *reason set.
 */
static __always_inline struct berth_ct_entry *berth_nat_create_snat(struct __sk_buff *skb, const struct berth_nat_cfg *cfg, const struct berth_ct_key *okey,
								    struct berth_ct_entry *orig, const struct berth_ct_entry *reply,
								    __u32 *reason)
{
	struct berth_ct_key rkey;
	__u32 range = 0, retries = 0, i;
	int icmp = okey->proto == IPPROTO_ICMP || okey->proto == 58; /* ICMPv6 echo too (lib/nat6.h) */
	int ret;

	if (cfg->port_max >= cfg->port_min && cfg->port_min)
		range = (__u32)cfg->port_max - cfg->port_min + 1;
	berth_ct_reverse(&rkey, &orig->rewrite);
	for (i = 0; i <= BERTH_NAT_MAX_TRIES; i++) {
		if (i == 0) {
			__u16 kept = bpf_ntohs(rkey.dport);

			if (!range || kept < cfg->port_min || kept > cfg->port_max)
				continue;
		} else {
			__be16 port;

			if (i > cfg->tries || !range)
				break;
			port = bpf_htons((__u16)(cfg->port_min + bpf_get_prandom_u32() % range));
			rkey.dport = port;
			if (icmp)
				rkey.sport = port;
			retries++;
		}
		if (berth_host_sock_owns(skb, &rkey))
			continue; /* a host socket's tuple: taken */
		ret = berth_ct_insert(&rkey, reply);
		if (ret == 0)
			goto inserted;
		if (ret != -EEXIST) {
			if (retries)
				berth_stat_add(BERTH_STAT_NAT_PORT_RETRIES, retries);
			berth_stat_add(BERTH_STAT_CT_FULL, 1);
			*reason = BERTH_DROP_CT_FULL;
			return NULL;
		}
	}
	if (retries)
		berth_stat_add(BERTH_STAT_NAT_PORT_RETRIES, retries);
	berth_stat_add(BERTH_STAT_NAT_PORT_EXHAUSTED, 1);
	*reason = BERTH_DROP_NAT_NO_PORT;
	return NULL;

inserted:
	if (retries)
		berth_stat_add(BERTH_STAT_NAT_PORT_RETRIES, retries);
	orig->rewrite.sport = rkey.dport;
	if (icmp)
		orig->rewrite.dport = rkey.dport;
	return berth_ct_commit(okey, orig, &rkey, reason);
}

/*
 * An ICMP error (destination unreachable, time exceeded, parameter problem)
 * whose quoted header is a packet berth translated on its way out. The
 * quoted packet left with tuple Q, which is the `rewrite` of some half; the
 * error travels the other way, so the half it belongs to is keyed by Q
 * reversed, and that half's rewrite R says where it goes. Rewrites:
 *   outer destination -> R.daddr; outer source -> R.saddr only when the error
 *   came from the quoted packet's destination itself (a router on the way
 *   keeps its own address);
 *   quoted header -> R reversed (addresses, ports or echo identifier; the
 *   addresses alone for a protocol tracked without ports), with
 *   the quoted IP header's checksum and the ICMP checksum fixed. The quoted
 *   transport checksum is left as it is (the receiver does not verify it).
 * Returns the half to send it with, NULL when the error is not berth's
 * (nothing was written then), or sets *bad on a helper failure.
 */
static __always_inline struct berth_ct_entry *berth_nat_icmp_error(struct __sk_buff *skb, const struct berth_l4 *p, int *bad)
{
	__u32 in_off = p->l4_off + 8, in_l4, icsum = p->l4_off + 2;
	struct berth_ct_key k = {};
	__be32 rs, rd;
	__be16 rsport, rdport;
	struct berth_ct_entry *e;
	struct iphdr in;
	__be16 ports[4];
	__be16 old_csum, new_csum;
	__be32 osrc;
	int ret;

	*bad = 0;
	if (p->frag != BERTH_FRAG_NONE || !berth_icmp_is_error(p->icmp_type))
		return NULL;
	if (bpf_skb_load_bytes(skb, in_off, &in, sizeof(in)) < 0 || in.version != 4 || in.ihl < 5)
		return NULL;
	if (bpf_ntohs(in.frag_off) & BERTH_IP_OFFSET)
		return NULL;
	in_l4 = in_off + (__u32)in.ihl * 4;
	/* the quoted header and ports lie inside the error's own datagram */
	if (in_l4 + sizeof(ports) > p->l3_end || bpf_skb_load_bytes(skb, in_l4, ports, sizeof(ports)) < 0)
		return NULL;
	berth_addr_set4(k.saddr, in.daddr);
	berth_addr_set4(k.daddr, in.saddr);
	k.proto = in.protocol;
	k.family = BERTH_AF_INET;
	if (in.protocol == IPPROTO_TCP || in.protocol == IPPROTO_UDP) {
		k.sport = ports[1];
		k.dport = ports[0];
	} else if (in.protocol == IPPROTO_ICMP) {
		if (!berth_icmp_is_echo(((__u8 *)ports)[0]))
			return NULL;
		k.sport = ports[2];
		k.dport = ports[2];
	} /* another protocol (GRE, SCTP, ...): the generic tuple, ports 0 (lib/generic.h) */
	e = bpf_map_lookup_elem(&berth_ct, &k);
	if (!e || (e->flags & BERTH_CT_ROUTED))
		return NULL; /* a routed flow's: nothing to translate (lib/routed.h) */
	rs = berth_addr4(e->rewrite.saddr);
	rd = berth_addr4(e->rewrite.daddr);
	rsport = e->rewrite.sport;
	rdport = e->rewrite.dport;

	/* outer header */
	osrc = p->saddr == in.daddr ? rs : p->saddr;
	ret = berth_set_addr(skb, p->l3_off + offsetof(struct iphdr, saddr), p->l3_off + offsetof(struct iphdr, check), 0, 0, p->saddr, osrc);
	if (ret >= 0)
		ret = berth_set_addr(skb, p->l3_off + offsetof(struct iphdr, daddr), p->l3_off + offsetof(struct iphdr, check), 0, 0, p->daddr, rd);
	/* quoted addresses: the quoted IP checksum follows them, then the ICMP
	 * checksum follows the quoted addresses and the quoted IP checksum */
	old_csum = in.check;
	if (ret >= 0 && in.saddr != rd)
		ret = bpf_l3_csum_replace(skb, in_off + offsetof(struct iphdr, check), in.saddr, rd, 4);
	if (ret >= 0 && in.daddr != rs)
		ret = bpf_l3_csum_replace(skb, in_off + offsetof(struct iphdr, check), in.daddr, rs, 4);
	if (ret >= 0)
		ret = bpf_skb_load_bytes(skb, in_off + offsetof(struct iphdr, check), &new_csum, 2);
	if (ret >= 0)
		ret = berth_set_be16(skb, in_off + offsetof(struct iphdr, check), icsum, 0, old_csum, new_csum);
	if (ret >= 0)
		ret = berth_set_be32_plain(skb, in_off + offsetof(struct iphdr, saddr), icsum, in.saddr, rd);
	if (ret >= 0)
		ret = berth_set_be32_plain(skb, in_off + offsetof(struct iphdr, daddr), icsum, in.daddr, rs);
	if (in.protocol == IPPROTO_ICMP) {
		if (ret >= 0)
			ret = berth_set_be16(skb, in_l4 + 4, icsum, 0, ports[2], rsport);
	} else if (in.protocol == IPPROTO_TCP || in.protocol == IPPROTO_UDP) {
		if (ret >= 0)
			ret = berth_set_be16(skb, in_l4, icsum, 0, ports[0], rdport);
		if (ret >= 0)
			ret = berth_set_be16(skb, in_l4 + 2, icsum, 0, ports[1], rsport);
	}
	if (ret < 0) {
		*bad = 1;
		return NULL;
	}
	return e;
}

#endif
