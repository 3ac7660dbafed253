// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Host sockets to published ports, translated once per connect()/sendmsg()
 * instead of per packet (the controller attaches these to the root cgroup
 * v2). A host socket that connects or sends to a local address on a
 * published port gets the container's address and port instead:
 *   127.0.0.0/8  -> the LOOPBACK entry (key 127.0.0.1), else the any (0) entry;
 *   a host address (berth_host_addr) -> its exact entry, else the any entry;
 *   (a LOOPBACK-flagged entry is only ever matched from 127.0.0.0/8).
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

static __always_inline void sock_translate(struct bpf_sock_addr *ctx)
{
	struct berth_publish_value *v = sock_target(ctx);
	struct berth_sock_key k = {};
	struct berth_sock_value orig = {};

	if (!v)
		return;
	if (ctx->protocol == IPPROTO_UDP) {
		k.cookie = bpf_get_socket_cookie(ctx);
		k.addr = berth_addr4(v->addr);
		k.port = v->port;
		orig.addr = ctx->user_ip4;
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
	k.addr = ctx->user_ip4;
	k.port = (__be16)ctx->user_port;
	orig = bpf_map_lookup_elem(&berth_sock, &k);
	if (orig) {
		ctx->user_ip4 = orig->addr;
		ctx->user_port = orig->port;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
