/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * berth's contract between the BPF programs and user space.
 *
 * Every map key/value struct, verdict and drop reason lives here and only
 * here. The TypeScript codecs (src/contract.ts) are checked against the BTF
 * that clang emits for these types (test/unit/contract-btf.test.ts), so the
 * two sides cannot drift. Rules for editing:
 *   - fixed-width types only, explicit padding fields, no bitfields;
 *   - append enum values, never renumber them (they are exported metric labels);
 *   - every struct and enum must be referenced by a map or by berth_btf_anchor
 *     below so that it is present in the object's BTF.
 */
#ifndef BERTH_CONTRACT_H
#define BERTH_CONTRACT_H

#include <linux/types.h>

/* Where a packet was seen, from the container's point of view. */
enum berth_direction {
	BERTH_DIR_FROM_CONTAINER = 0, /* container -> host (host veth ingress) */
	BERTH_DIR_TO_CONTAINER = 1,   /* host -> container (host veth egress, or redirected into it) */
	BERTH_DIR_MAX = 2,
};

/* What berth did with a packet. */
enum berth_verdict {
	BERTH_VERDICT_PASS = 0,     /* handed to the kernel's own path */
	BERTH_VERDICT_REDIRECT = 1, /* delivered by berth straight into a namespace */
	BERTH_VERDICT_DROP = 2,     /* dropped; see the reason */
	BERTH_VERDICT_MAX = 3,
};

/* Why a packet was dropped. One enum, shared with metrics and the CLI. */
enum berth_drop_reason {
	BERTH_DROP_NONE = 0,
	BERTH_DROP_ISOLATION = 1,   /* between two different networks */
	BERTH_DROP_ICC = 2,         /* container to container on a network with icc off */
	BERTH_DROP_MALFORMED = 3,   /* headers that claim more than the packet holds */
	BERTH_DROP_NO_ENDPOINT = 4, /* the destination endpoint vanished mid-flight */
	BERTH_DROP_REASON_MAX = 5,
};

/* Per-endpoint flags, decided by the controller from the network's settings. */
enum berth_endpoint_flags {
	BERTH_EP_ICC = 1u << 0, /* container to container allowed inside its network */
};

/* Packets and bytes for one verdict. */
struct berth_pb {
	__u64 packets;
	__u64 bytes;
};

/* Counter map key: one entry per host-side veth and direction. */
struct berth_counter_key {
	__u32 ifindex;
	__u32 direction; /* enum berth_direction */
};

/* Counter map value (per CPU). drop[] is indexed by enum berth_drop_reason. */
struct berth_counter_value {
	struct berth_pb pass;
	struct berth_pb redirect;
	struct berth_pb drop[BERTH_DROP_REASON_MAX];
};

/* Endpoints by the host-side veth's ifindex: who is sending. */
struct berth_ifindex_key {
	__u32 ifindex;
};

/* Endpoints by IPv4 address: who is the destination. */
struct berth_ip_key {
	__be32 addr;
};

/* One container's attachment to one network. Same value in both endpoint maps. */
struct berth_endpoint {
	__be32 addr;      /* the container's address */
	__u32 ifindex;    /* host-side veth */
	__u32 network_id; /* controller-assigned, stable while the network exists */
	__u32 flags;      /* enum berth_endpoint_flags */
	__u8 mac[6];      /* the container's eth0 MAC */
	__u8 pad[2];
};

/*
 * Controller-only metadata, pinned so that a restarted daemon (or the CLI)
 * can name what the dataplane holds without its config file. Never read by
 * the per-packet path.
 */
#define BERTH_NAME_LEN 64

struct berth_network_key {
	__u32 network_id;
};

struct berth_network_meta {
	char name[BERTH_NAME_LEN];
	char bridge[16];  /* IFNAMSIZ */
	__be32 subnet;
	__u32 prefix_len;
	__be32 gateway;
	__u32 flags;      /* enum berth_endpoint_flags applied to its endpoints */
};

struct berth_endpoint_meta {
	char container[BERTH_NAME_LEN];
	char ifname[16];  /* host-side veth name */
	__u32 network_id;
	__u32 pad;
};

/*
 * Not a map type: a struct whose members name every enum above, so that clang
 * emits them into BTF and user space can read their values from the object.
 */
struct berth_btf_anchor {
	enum berth_direction direction;
	enum berth_verdict verdict;
	enum berth_drop_reason reason;
	enum berth_endpoint_flags flags;
};

#endif /* BERTH_CONTRACT_H */
