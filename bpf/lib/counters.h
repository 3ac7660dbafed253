/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-veth counters. Entries are created by the controller when it programs an
 * endpoint; a packet on an interface berth does not know is simply not counted
 * (never allocates on the packet path). Per-CPU values: plain adds, no atomics. */
#ifndef BERTH_LIB_COUNTERS_H
#define BERTH_LIB_COUNTERS_H

#include "lib/maps.h"

static __always_inline void berth_count(__u32 ifindex, __u32 dir, __u32 verdict, __u32 reason, __u32 bytes)
{
	struct berth_counter_key key = { .ifindex = ifindex, .direction = dir };
	struct berth_counter_value *v;
	struct berth_pb *pb;

	v = bpf_map_lookup_elem(&berth_counters, &key);
	if (!v)
		return;
	if (verdict == BERTH_VERDICT_PASS)
		pb = &v->pass;
	else if (verdict == BERTH_VERDICT_REDIRECT)
		pb = &v->redirect;
	else if (reason < BERTH_DROP_REASON_MAX)
		pb = &v->drop[reason];
	else
		pb = &v->drop[BERTH_DROP_NONE];
	pb->packets += 1;
	pb->bytes += bytes;
}

#endif
