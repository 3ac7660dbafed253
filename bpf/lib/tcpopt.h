/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TCP options: the window scale a SYN (or SYN-ACK) announces (RFC 7323
 * section 2), read as the kernel's conntrack reads it (tcp_options() in
 * nf_conntrack_proto_tcp.c): options are walked from the end of the fixed
 * header over the length the data offset claims, at most 40 bytes and never
 * past the datagram's end (tot_len) or the linear data; the walk stops at
 * EOL, at an option whose length is below 2 or runs past the options, and
 * at the first window-scale option of length 3, whose shift is capped at 14.
 * Reads only. A bounded walk: one option per bpf_loop round, at most 40
 * rounds (every option takes at least one byte).
 */
#ifndef BERTH_LIB_TCPOPT_H
#define BERTH_LIB_TCPOPT_H

#include "kernel.h"
#include "berth_contract.h"

#define BERTH_TCPOPT_EOL 0
#define BERTH_TCPOPT_NOP 1
#define BERTH_TCPOPT_WINDOW 3
#define BERTH_TCPOLEN_WINDOW 3
#define BERTH_TCP_MAX_WSCALE 14
#define BERTH_TCPOPT_MAX 40

struct berth_tcpopt_walk {
	__u8 *opt;        /* first option byte (packet) */
	void *end;        /* end of the linear data */
	__u32 len;        /* option bytes to walk, <= BERTH_TCPOPT_MAX */
	__u32 off;        /* the next option, from opt */
	__u8 wscale;      /* the result: shift | BERTH_CT_WSCALE_SEEN, or 0 */
};

/* The byte at opt + off + at, or -1 when it lies past the options or the linear data. */
static __always_inline int berth_tcpopt_byte(struct berth_tcpopt_walk *w, __u32 at)
{
	__u32 off = w->off + at;
	__u8 *b;

	if (off >= w->len || off >= BERTH_TCPOPT_MAX)
		return -1;
	b = w->opt + off;
	if ((void *)(b + 1) > w->end)
		return -1;
	return *b;
}

/* One option; 1 ends the walk (bpf_loop's callback contract). */
static int berth_tcpopt_step(__u32 index, void *ctx)
{
	struct berth_tcpopt_walk *w = ctx;
	int kind, len, shift;

	kind = berth_tcpopt_byte(w, 0);
	if (kind < 0 || kind == BERTH_TCPOPT_EOL)
		return 1;
	if (kind == BERTH_TCPOPT_NOP) {
		w->off++;
		return 0;
	}
	len = berth_tcpopt_byte(w, 1);
	if (len < 2 || w->off + len > w->len)
		return 1;
	if (kind == BERTH_TCPOPT_WINDOW && len == BERTH_TCPOLEN_WINDOW) {
		shift = berth_tcpopt_byte(w, 2);
		if (shift < 0)
			return 1;
		w->wscale = (shift > BERTH_TCP_MAX_WSCALE ? BERTH_TCP_MAX_WSCALE : shift) | BERTH_CT_WSCALE_SEEN;
		return 1;
	}
	w->off += len;
	return 0;
}

/*
 * The window scale of a TCP header th (its 20 fixed bytes checked by the
 * caller) whose options are optlen bytes long, as far as they lie before
 * end: shift | BERTH_CT_WSCALE_SEEN, or 0 when there is none.
 */
static __always_inline __u8 berth_tcp_wscale(struct tcphdr *th, void *end, __u32 optlen)
{
	struct berth_tcpopt_walk w = {
		.opt = (__u8 *)(th + 1),
		.end = end,
		.len = optlen > BERTH_TCPOPT_MAX ? BERTH_TCPOPT_MAX : optlen,
	};

	if (!w.len)
		return 0;
	bpf_loop(BERTH_TCPOPT_MAX, berth_tcpopt_step, &w, 0);
	return w.wscale;
}

#endif
