// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Host sockets to published ports, translated once per connect()/sendmsg()
 * instead of per packet (the controller attaches these to the root cgroup
 * v2). A host socket that connects or sends to a local address on a
 * published port gets the container's address and port instead:
 *   127.0.0.0/8  -> the LOOPBACK entry (key 127.0.0.1), else the any (0) entry;
 *   a host address (berth_host_addr) -> its exact entry, else the any entry;
 *   (a LOOPBACK-flagged entry is only ever matched from 127.0.0.0/8).
 * IPv6 sockets (connect6/sendmsg6/recvmsg6) the same way, by the IPv6
 * entries: ::1 -> the LOOPBACK entry (key ::1), else the any (::) entry; a
 * host IPv6 address (berth_host_addr6) -> its exact entry, else the any
 * entry. A v4-mapped destination (::ffff:a.b.c.d, a dual-stack socket
 * talking IPv4) follows the IPv4 rules above and gets the container's IPv4
 * address, v4-mapped.
 * UDP sockets are recorded in berth_sock (cookie, container addr/port) ->
 * (the address/port the application used) so that recvmsg() reports replies
 * as coming from where the application sent.
 *
 * Only sockets of the host's network namespace are touched: a process in a
 * container's namespace that talks to its own 127.0.0.1 must not be
 * translated. berth_host_netns_cookie (set by the controller, e.g. from
 * SO_NETNS_COOKIE on a socket of the host namespace) names it; 0 translates
 * nothing. The hooks allow the call (return 1), except that connect() and
 * sendmsg() of a host socket bound explicitly to a port of the masquerade
 * range are refused (EPERM) when a translated flow holds that port for the
 * same destination (lib/sockguard.h): its answers would go to the container.
 */
#include "kernel.h"
#include "berth_contract.h"
#include "lib/maps.h"
#include "lib/conntrack.h"
#include "lib/publish.h"
#include "lib/sockguard.h"

const volatile __u64 berth_host_netns_cookie = 0;

const volatile struct berth_btf_anchor berth_btf_anchor;

static __always_inline struct berth_publish_value *sock_target(struct bpf_sock_addr *ctx)
{
	struct berth_publish_value *v;
	__be32 addr = ctx->user_ip4;
	__be16 port = (__be16)ctx->user_port;
	__u8 proto = ctx->protocol;

	if (!berth_host_netns_cookie || bpf_get_netns_cookie(ctx) != berth_host_netns_cookie)
		return NULL;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return NULL;
	if (berth_is_loopback(addr)) {
		v = berth_publish_lookup(bpf_htonl(0x7f000001), port, proto);
		if (v)
			return v;
	} else if (berth_is_host_addr(addr)) {
		v = berth_publish_lookup(addr, port, proto);
		if (v && !(v->flags & BERTH_PUB_LOOPBACK))
			return v;
	} else {
		return NULL;
	}
	v = berth_publish_lookup(0, port, proto);
	if (v && !(v->flags & BERTH_PUB_LOOPBACK))
		return v;
	return NULL;
}

/* The IPv6 twin of sock_target, for a destination that is not v4-mapped. */
static __always_inline struct berth_publish_value *sock_target6(struct bpf_sock_addr *ctx, const __be32 *addr)
{
	static const __be32 any[4] = {};
	struct berth_publish_value *v;
	__be16 port = (__be16)ctx->user_port;
	__u8 proto = ctx->protocol;

	if (addr[0] == 0 && addr[1] == 0 && addr[2] == 0 && addr[3] == bpf_htonl(1)) {
		v = berth_publish_lookup6(addr, port, proto);
		if (v)
			return v;
	} else if (berth_is_host_addr6(addr)) {
		v = berth_publish_lookup6(addr, port, proto);
		if (v && !(v->flags & BERTH_PUB_LOOPBACK))
			return v;
	} else {
		return NULL;
	}
	v = berth_publish_lookup6(any, port, proto);
	if (v && !(v->flags & BERTH_PUB_LOOPBACK))
		return v;
	return NULL;
}

static __always_inline int sock_ours(struct bpf_sock_addr *ctx)
{
	if (!berth_host_netns_cookie || bpf_get_netns_cookie(ctx) != berth_host_netns_cookie)
		return 0;
	return ctx->protocol == IPPROTO_TCP || ctx->protocol == IPPROTO_UDP;
}

static __always_inline int sock_is_v4mapped(const __be32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == BERTH_V4MAPPED_WORD;
}

/* connect6 / sendmsg6: 0 to refuse the call (lib/sockguard.h), 1 to let it go on (translated or not). */
static __always_inline int sock_translate6(struct bpf_sock_addr *ctx)
{
	struct berth_publish_value *v;
	struct berth_sock_key k = {};
	struct berth_sock_value orig = {};
	__be32 dst[4];

	if (!sock_ours(ctx))
		return 1;
	dst[0] = ctx->user_ip6[0];
	dst[1] = ctx->user_ip6[1];
	dst[2] = ctx->user_ip6[2];
	dst[3] = ctx->user_ip6[3];
	if (berth_sock_port_held6(ctx, dst))
		return 0;
	if (sock_is_v4mapped(dst)) {
		__be32 a4 = dst[3];

		v = NULL;
		if (berth_is_loopback(a4)) {
			v = berth_publish_lookup(bpf_htonl(0x7f000001), (__be16)ctx->user_port, ctx->protocol);
		} else if (berth_is_host_addr(a4)) {
			v = berth_publish_lookup(a4, (__be16)ctx->user_port, ctx->protocol);
			if (v && (v->flags & BERTH_PUB_LOOPBACK))
				v = NULL;
		} else {
			return 1;
		}
		if (!v) {
			v = berth_publish_lookup(0, (__be16)ctx->user_port, ctx->protocol);
			if (v && (v->flags & BERTH_PUB_LOOPBACK))
				v = NULL;
		}
	} else {
		v = sock_target6(ctx, dst);
	}
	if (!v)
		return 1;
	if (ctx->protocol == IPPROTO_UDP) {
		k.cookie = bpf_get_socket_cookie(ctx);
		berth_addr_copy(k.addr, v->addr);
		k.port = v->port;
		berth_addr_copy(orig.addr, dst);
		orig.port = (__be16)ctx->user_port;
		bpf_map_update_elem(&berth_sock, &k, &orig, BPF_ANY);
	}
	/* the entry's address is of the destination's family: v4-mapped for a v4-mapped one */
	ctx->user_ip6[0] = v->addr[0];
	ctx->user_ip6[1] = v->addr[1];
	ctx->user_ip6[2] = v->addr[2];
	ctx->user_ip6[3] = v->addr[3];
	ctx->user_port = v->port;
	berth_stat_add(BERTH_STAT_SOCK_TRANSLATIONS, 1);
	return 1;
}

static __always_inline void sock_translate(struct bpf_sock_addr *ctx)
{
	struct berth_publish_value *v = sock_target(ctx);
	struct berth_sock_key k = {};
	struct berth_sock_value orig = {};

	if (!v)
		return;
	if (ctx->protocol == IPPROTO_UDP) {
		k.cookie = bpf_get_socket_cookie(ctx);
		berth_addr_copy(k.addr, v->addr);
		k.port = v->port;
		berth_addr_set4(orig.addr, ctx->user_ip4);
		orig.port = (__be16)ctx->user_port;
		bpf_map_update_elem(&berth_sock, &k, &orig, BPF_ANY);
	}
	ctx->user_ip4 = berth_addr4(v->addr);
	ctx->user_port = v->port;
	berth_stat_add(BERTH_STAT_SOCK_TRANSLATIONS, 1);
}

/* A host socket whose bound port a translated flow holds for this destination: refused. */
static __always_inline int sock_refused(struct bpf_sock_addr *ctx)
{
	if (!berth_host_netns_cookie || bpf_get_netns_cookie(ctx) != berth_host_netns_cookie)
		return 0;
	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 0;
	return berth_sock_port_held(ctx);
}

SEC("cgroup/connect4")
int berth_sock_conn(struct bpf_sock_addr *ctx)
{
	if (sock_refused(ctx))
		return 0;
	sock_translate(ctx);
	return 1;
}

SEC("cgroup/sendmsg4")
int berth_sock_send(struct bpf_sock_addr *ctx)
{
	if (sock_refused(ctx))
		return 0;
	sock_translate(ctx);
	return 1;
}

SEC("cgroup/recvmsg4")
int berth_sock_recv(struct bpf_sock_addr *ctx)
{
	struct berth_sock_key k = {};
	struct berth_sock_value *orig;

	if (!berth_host_netns_cookie || ctx->protocol != IPPROTO_UDP)
		return 1;
	k.cookie = bpf_get_socket_cookie(ctx);
	berth_addr_set4(k.addr, ctx->user_ip4);
	k.port = (__be16)ctx->user_port;
	orig = bpf_map_lookup_elem(&berth_sock, &k);
	if (orig) {
		ctx->user_ip4 = berth_addr4(orig->addr);
		ctx->user_port = orig->port;
	}
	return 1;
}

SEC("cgroup/connect6")
int berth_sock_conn6(struct bpf_sock_addr *ctx)
{
	return sock_translate6(ctx);
}

SEC("cgroup/sendmsg6")
int berth_sock_send6(struct bpf_sock_addr *ctx)
{
	return sock_translate6(ctx);
}

SEC("cgroup/recvmsg6")
int berth_sock_recv6(struct bpf_sock_addr *ctx)
{
	struct berth_sock_key k = {};
	struct berth_sock_value *orig;

	if (!berth_host_netns_cookie || ctx->protocol != IPPROTO_UDP)
		return 1;
	k.cookie = bpf_get_socket_cookie(ctx);
	k.addr[0] = ctx->user_ip6[0];
	k.addr[1] = ctx->user_ip6[1];
	k.addr[2] = ctx->user_ip6[2];
	k.addr[3] = ctx->user_ip6[3];
	k.port = (__be16)ctx->user_port;
	orig = bpf_map_lookup_elem(&berth_sock, &k);
	if (orig) {
		ctx->user_ip6[0] = orig->addr[0];
		ctx->user_ip6[1] = orig->addr[1];
		ctx->user_ip6[2] = orig->addr[2];
		ctx->user_ip6[3] = orig->addr[3];
		ctx->user_port = orig->port;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
