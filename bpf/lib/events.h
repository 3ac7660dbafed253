/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Drop events for `berth monitor`. Costs one array lookup per drop while
 * nobody listens. While the monitor is on, a per-CPU token bucket (credit in
 * nanoseconds) caps the events per second, so a flood of drops costs the
 * dataplane a few map lookups per packet and never fills the ring buffer
 * faster than the reader was promised. Headers are re-parsed here from the
 * packet's start: drop paths are the slow paths.
 */
#ifndef BERTH_LIB_EVENTS_H
#define BERTH_LIB_EVENTS_H

#include "kernel.h"
#include "lib/maps.h"
#include "lib/stats.h"
#include "lib/addr.h"

static __always_inline int berth_monitor_admit(void)
{
	struct berth_monitor_bucket *b;
	struct berth_monitor_cfg *cfg;
	__u64 now, interval, cap;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&berth_monitor, &zero);
	if (!cfg || !cfg->enabled || !cfg->rate_per_sec)
		return 0;
	b = bpf_map_lookup_elem(&berth_monitor_bucket, &zero);
	if (!b)
		return 0;
	now = bpf_ktime_get_ns();
	interval = 1000000000ULL / cfg->rate_per_sec;
	cap = interval * (cfg->burst ? cfg->burst : 1);
	b->credit_ns += now - b->last_ns;
	b->last_ns = now;
	if (b->credit_ns > cap)
		b->credit_ns = cap;
	if (b->credit_ns < interval) {
		berth_stat_add(BERTH_STAT_EVENTS_SUPPRESSED, 1);
		return 0;
	}
	b->credit_ns -= interval;
	return 1;
}

/* data/data_end: the packet from its Ethernet header. */
static __always_inline void berth_emit_drop(void *data, void *data_end, __u32 ifindex, __u32 dir, __u32 reason, __u32 len)
{
	struct berth_drop_event *ev;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	__u16 *ports;

	if (!berth_monitor_admit())
		return;
	ev = bpf_ringbuf_reserve(&berth_events, sizeof(*ev), 0);
	if (!ev) {
		berth_stat_add(BERTH_STAT_EVENTS_SUPPRESSED, 1);
		return;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = bpf_ktime_get_ns();
	ev->ifindex = ifindex;
	ev->reason = reason;
	ev->direction = dir;
	ev->len = len > 0xffff ? 0xffff : len;
	if ((void *)(eth + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		/* the fixed header's addresses; ports when TCP or UDP follows it
		 * directly (behind extension headers: none) */
		if ((void *)(ip6h + 1) <= data_end) {
			__builtin_memcpy(ev->saddr, &ip6h->saddr, 16);
			__builtin_memcpy(ev->daddr, &ip6h->daddr, 16);
			ev->proto = ip6h->nexthdr;
			ports = (void *)(ip6h + 1);
			if ((ip6h->nexthdr == IPPROTO_TCP || ip6h->nexthdr == IPPROTO_UDP) && (void *)(ports + 2) <= data_end) {
				ev->sport = ports[0];
				ev->dport = ports[1];
			}
		}
	} else if ((void *)(eth + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP)) {
		iph = (void *)(eth + 1);
		if ((void *)(iph + 1) <= data_end) {
			berth_addr_set4(ev->saddr, iph->saddr);
			berth_addr_set4(ev->daddr, iph->daddr);
			ev->proto = iph->protocol;
			ports = (void *)iph + ((__u32)iph->ihl & 0xf) * 4;
			if ((iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP) &&
			    !(iph->frag_off & bpf_htons(0x1fff)) && iph->ihl >= 5 && (void *)(ports + 2) <= data_end) {
				ev->sport = ports[0];
				ev->dport = ports[1];
			}
		}
	}
	bpf_ringbuf_submit(ev, 0);
	berth_stat_add(BERTH_STAT_EVENTS_EMITTED, 1);
}

/* Out of line on purpose: a subprogram reads skb->data afresh, so the
 * caller's code keeps no extra ctx-derived pointers alive (clang would
 * otherwise hoist and spill them, which the verifier refuses). */
static __noinline __attribute__((unused)) void berth_emit_drop_skb(struct __sk_buff *skb, __u32 ifindex, __u32 dir, __u32 reason, __u32 len)
{
	berth_emit_drop((void *)(long)skb->data, (void *)(long)skb->data_end, ifindex, dir, reason, len);
}

#endif
