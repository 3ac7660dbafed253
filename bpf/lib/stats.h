/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Dataplane-wide counters (struct berth_global_stats, one per-CPU slot). */
#ifndef BERTH_LIB_STATS_H
#define BERTH_LIB_STATS_H

#include "lib/maps.h"

#define BERTH_STAT_CT_CREATED 0
#define BERTH_STAT_CT_FULL 1
#define BERTH_STAT_NAT_PORT_RETRIES 2
#define BERTH_STAT_NAT_PORT_EXHAUSTED 3
#define BERTH_STAT_SOCK_TRANSLATIONS 4
#define BERTH_STAT_EVENTS_EMITTED 5
#define BERTH_STAT_EVENTS_SUPPRESSED 6
#define BERTH_STAT_CT_ASSURED 7
#define BERTH_STAT_CT_EVICTED 8

static __always_inline void berth_stat_add(__u32 which, __u64 n)
{
	__u32 zero = 0;
	struct berth_global_stats *s = bpf_map_lookup_elem(&berth_stats, &zero);

	if (!s)
		return;
	switch (which) {
	case BERTH_STAT_CT_CREATED: s->ct_created += n; break;
	case BERTH_STAT_CT_FULL: s->ct_full += n; break;
	case BERTH_STAT_NAT_PORT_RETRIES: s->nat_port_retries += n; break;
	case BERTH_STAT_NAT_PORT_EXHAUSTED: s->nat_port_exhausted += n; break;
	case BERTH_STAT_SOCK_TRANSLATIONS: s->sock_translations += n; break;
	case BERTH_STAT_EVENTS_EMITTED: s->events_emitted += n; break;
	case BERTH_STAT_EVENTS_SUPPRESSED: s->events_suppressed += n; break;
	case BERTH_STAT_CT_ASSURED: s->ct_assured += n; break;
	case BERTH_STAT_CT_EVICTED: s->ct_evicted += n; break;
	}
}

#endif
