/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The user's policy (Docker's DOCKER-USER): ordered allow/deny rules that
 * every packet of an inbound flow to a published port meets before berth's
 * own verdicts, the first packet of a flow and every later one alike (as
 * DOCKER-USER sees every forwarded packet), so a new deny cuts a live flow
 * at its next packet. The controller writes a whole rule set into the bank
 * packets are not reading (rules in slots 0..n-1, an END after the last),
 * then flips berth_policy_active: a packet reads one bank, old or new. The
 * walk stops at the first END; the default is allow. Matched packets are
 * counted per slot.
 */
#ifndef BERTH_LIB_POLICY_H
#define BERTH_LIB_POLICY_H

#include "lib/maps.h"

/* 1 when the policy denies a packet from saddr to container caddr via host port hport.
 * A global function: the verifier checks its rule loop once, not once per
 * path of its caller. */
__noinline int berth_policy_denies(__be32 saddr, __be32 caddr, __be16 hport, __u8 proto, __u32 len)
{
	struct berth_policy_ctl *ctl;
	struct berth_policy_rule *r;
	struct berth_pb *hits;
	__u32 zero = 0, base, i;

	ctl = bpf_map_lookup_elem(&berth_policy_active, &zero);
	base = (ctl && ctl->bank) ? BERTH_MAX_POLICY_RULES : 0;
	for (i = 0; i < BERTH_MAX_POLICY_RULES; i++) {
		__u32 slot = base + i;

		r = bpf_map_lookup_elem(&berth_policy, &slot);
		if (!r || r->action == BERTH_POLICY_END)
			return 0;
		if ((saddr & r->src_mask) != r->src_addr || (caddr & r->dst_mask) != r->dst_addr)
			continue;
		if ((r->port && r->port != hport) || (r->proto && r->proto != proto))
			continue;
		hits = bpf_map_lookup_elem(&berth_policy_hits, &slot);
		if (hits) {
			hits->packets += 1;
			hits->bytes += len;
		}
		return r->action == BERTH_POLICY_DENY;
	}
	return 0;
}

#endif
