// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Optional XDP program for a served interface (an uplink or another): the
 * refusals of berth_up_in done before an skb exists (to 127.0.0.0/8:
 * LOOPBACK_ONLY; to a container address: NOT_PUBLISHED, a routed network's
 * aside, whose bridge decides; IPv6: ::1 and a container's IPv6 address,
 * lib/guard6.h, a routed-v6 network's aside likewise), counted in the same
 * berth_counters entry (the interface's ifindex, direction 0). Everything
 * else is XDP_PASS, uncounted here: the TC program on the same interface
 * counts and translates it. XDP never translates. The controller attaches it
 * only where the driver runs XDP natively (src/platform/xdpmode.ts): on a
 * veth or a bridge the TC program's identical drops are the only ones.
 */
#include "kernel.h"
#include "berth_contract.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/counters.h"
#include "lib/events.h"
#include "lib/publish.h"
#include "lib/guard6.h"

const volatile __u8 berth_fast_path = 1;

const volatile struct berth_btf_anchor berth_btf_anchor;

/* out of line, like berth_emit_drop_skb (lib/events.h) */
static __noinline void berth_emit_drop_xdp(struct xdp_md *ctx, __u32 ifindex, __u32 dir, __u32 reason, __u32 len)
{
	berth_emit_drop((void *)(long)ctx->data, (void *)(long)ctx->data_end, ifindex, dir, reason, len);
}

/* IPv6: berth_up_in's refusals (lib/guard6.h berth_uplink_refuse6). */
static __always_inline int xdp_up6(struct xdp_md *ctx, struct berth_cursor *c)
{
	struct ipv6hdr *ip6h = c->pos;
	__be32 daddr[4];
	__u32 reason;

	if ((void *)(ip6h + 1) > c->end)
		return XDP_PASS;
	__builtin_memcpy(daddr, &ip6h->daddr, 16);
	reason = berth_uplink_refuse6(daddr);
	if (!reason)
		return XDP_PASS;
	berth_count(ctx->ingress_ifindex, 0, BERTH_VERDICT_DROP, reason, (__u32)(ctx->data_end - ctx->data));
	berth_emit_drop_xdp(ctx, ctx->ingress_ifindex, 0, reason, (__u32)(ctx->data_end - ctx->data));
	return XDP_DROP;
}

SEC("xdp")
int berth_xdp_up(struct xdp_md *ctx)
{
	struct berth_cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	__u32 reason;

	if (!berth_fast_path)
		return XDP_PASS;
	berth_cursor_init_xdp(&c, ctx);
	eth = berth_parse_eth(&c);
	if (eth && eth->h_proto == bpf_htons(ETH_P_IPV6))
		return xdp_up6(ctx, &c);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	iph = berth_parse_ipv4(&c);
	if (!iph)
		return XDP_PASS;
	reason = berth_uplink_refuse(iph->daddr);
	if (!reason)
		return XDP_PASS;
	berth_count(ctx->ingress_ifindex, 0, BERTH_VERDICT_DROP, reason,
		    (__u32)(ctx->data_end - ctx->data));
	berth_emit_drop_xdp(ctx, ctx->ingress_ifindex, 0, reason, (__u32)(ctx->data_end - ctx->data));
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
