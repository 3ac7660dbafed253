/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Masquerade for the IP protocols other than TCP, UDP and ICMP (GRE, SCTP,
 * ESP, DCCP, UDP-Lite, ...), as Docker's MASQUERADE does them with the
 * kernel's nf_conntrack_proto_generic (and its GRE tracker, which treats
 * GRE version 0 the same way):
 *   - a datagram of such a protocol is a flow keyed by (saddr, daddr, proto)
 *     with both ports 0 (lib/l4.h sets `generic`, never has_ports), opened
 *     by a whole datagram or a first fragment; a later fragment carries the
 *     same tuple, so it finds its flow with no record of lib/frag.h (and
 *     without one it is an orphan, as any other);
 *   - it leaves with the uplink's address: the addresses rewritten, the IP
 *     header checksum fixed, and for DCCP and UDP-Lite the checksum over the
 *     pseudo header (lib/l4.h finds it; berth_nat_apply fixes it as it does
 *     TCP's). Nothing past the IP header is touched otherwise; SCTP's CRC32c
 *     covers no address;
 *   - the reply (remote -> uplink address, same protocol) is the flow's
 *     reply half, found by berth_up_in like any other;
 *   - there is no port to choose, so a second container opening the same
 *     (remote, protocol) from the same uplink address while the first flow
 *     lives takes no other tuple: its packet is dropped and counted as
 *     NAT_NO_PORT (and nat_port_exhausted). The kernel cannot tell the two
 *     apart either: nf_nat's get_unique_tuple leaves a portless tuple as it
 *     is, and the second connection fails its insert at confirm time, so its
 *     packet is dropped there too. Never a packet leaving untranslated, never
 *     one translated into the first container's flow;
 *   - states as UDP's: NEW, then ESTABLISHED + ASSURED at the first reply
 *     (lib/conntrack.h, berth_ct_seen); the controller expires them
 *     (src/engine/conntrack.ts: GRE with the kernel's GRE timeouts, the rest with
 *     its generic 600 s).
 * A packet of such a protocol arriving at an uplink without a flow is the
 * host's own (its GRE or IPsec tunnels): passed.
 */
#ifndef BERTH_LIB_GENERIC_H
#define BERTH_LIB_GENERIC_H

#include "kernel.h"
#include "lib/l4.h"
#include "lib/conntrack.h"
#include "lib/stats.h"

/*
 * Create a generic flow. On entry as for berth_nat_create_snat: okey the
 * arriving tuple (ports 0), orig->rewrite the leaving one, reply complete.
 * One try: the reply half's key is orig->rewrite reversed, and if another
 * flow holds it the packet is refused (NAT_NO_PORT) unless that flow is this
 * very one, just created on another CPU. Returns the live orig half or NULL
 * with *reason set.
 */
static __always_inline struct berth_ct_entry *berth_nat_create_generic(const struct berth_ct_key *okey, struct berth_ct_entry *orig,
								       const struct berth_ct_entry *reply, __u32 *reason)
{
	struct berth_ct_key rkey;
	struct berth_ct_entry *e;
	int ret;

	berth_ct_reverse(&rkey, &orig->rewrite);
	ret = berth_ct_insert(&rkey, reply);
	if (ret == 0)
		return berth_ct_commit(okey, orig, &rkey, reason);
	if (ret != -EEXIST) {
		berth_stat_add(BERTH_STAT_CT_FULL, 1);
		*reason = BERTH_DROP_CT_FULL;
		return NULL;
	}
	e = bpf_map_lookup_elem(&berth_ct, okey);
	if (e)
		return e;
	berth_stat_add(BERTH_STAT_NAT_PORT_EXHAUSTED, 1);
	*reason = BERTH_DROP_NAT_NO_PORT;
	return NULL;
}

#endif
