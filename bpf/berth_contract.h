/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * berth's contract between the BPF programs and user space.
 *
 * Every map key/value struct, verdict and drop reason lives here and only
 * here. The TypeScript codecs (src/platform/contract.ts) are checked against the BTF
 * that clang emits for these types (test/unit/contract-btf.test.ts), so the
 * two sides cannot drift. Rules for editing:
 *   - fixed-width types only, explicit padding fields, no bitfields;
 *   - append enum values, never renumber them (they are exported metric labels);
 *   - every struct and enum must be referenced by a map or by berth_btf_anchor
 *     below so that it is present in the object's BTF.
 */
#ifndef BERTH_CONTRACT_H
#define BERTH_CONTRACT_H

#include "kernel.h"

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
	BERTH_DROP_CT_FULL = 5,     /* conntrack table full: a new flow refused */
	BERTH_DROP_NAT_NO_PORT = 6, /* no free source port for masquerade */
	BERTH_DROP_NOT_PUBLISHED = 7, /* from outside to a container address or unpublished port */
	BERTH_DROP_INTERNAL = 8,    /* leaving an internal network's subnet */
	BERTH_DROP_NO_UPLINK = 9,   /* masquerade needed but the route leaves by no known uplink */
	BERTH_DROP_LOOPBACK_ONLY = 10, /* to 127.0.0.0/8 from outside the host */
	BERTH_DROP_FRAGMENT = 11,   /* unused since fragments are translated (lib/frag.h: FRAG_ORPHAN, TOO_BIG); kept, never renumbered */
	BERTH_DROP_POLICY = 12,     /* denied by the user's policy (DOCKER-USER equivalent) */
	BERTH_DROP_SPOOFED = 13,    /* a container sent with a source address that is not its own */
	BERTH_DROP_UNKNOWN_SOURCE = 14, /* from a container berth has not programmed (yet) */
	BERTH_DROP_CT_INVALID = 15, /* a TCP RST outside the receiver's window (conntrack: INVALID) */
	BERTH_DROP_TTL_EXCEEDED = 16, /* TTL 1 on a path into a container: no hop left to forward it */
	BERTH_DROP_TOO_BIG = 17,    /* bigger than the next hop's MTU where the kernel's answer cannot be had */
	BERTH_DROP_FRAG_ORPHAN = 18, /* a later fragment of a translated flow whose first fragment berth has not seen */
	BERTH_DROP_NO_IPV6 = 19,    /* the network lacks the packet's family: routable IPv6 on a network without
				     * IPv6 (link-local, NDP and MLD aside), IPv4 on an IPv6-only one (lib/guard6.h) */
	BERTH_DROP_REASON_MAX = 20,
};

/* Per-endpoint flags, decided by the controller from the network's settings. */
enum berth_endpoint_flags {
	BERTH_EP_ICC = 1u << 0,        /* container to container allowed inside its network */
	BERTH_EP_MASQUERADE = 1u << 1, /* traffic leaving the host is masqueraded */
	BERTH_EP_INTERNAL = 1u << 2,   /* traffic may not leave the network's subnet */
	BERTH_EP_ROUTED = 1u << 3,     /* gateway_mode_ipv4=routed: no NAT; reachable from outside on its
					* own address, on published container ports and ICMP (lib/routed.h) */
	BERTH_EP_IPV6 = 1u << 4,       /* the network has IPv6: berth_net.subnet6, the endpoint's addr6 */
	BERTH_EP_NO_IPV4 = 1u << 5,    /* an IPv6-only network (Docker's --ipv4=false): no IPv4 in or out */
	BERTH_EP_ROUTED6 = 1u << 6,    /* gateway_mode_ipv6=routed: no NAT66; reachable from outside on its
					* own addr6, on published container ports and ICMPv6 (lib/routed6.h) */
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

/*
 * Addresses of both families. The flow maps (conntrack, fragments, publish,
 * host sockets) hold both families in one map each: their keys carry 16-byte
 * addresses, IPv6 as is and IPv4 as ::ffff:a.b.c.d (RFC 4291 2.5.5.2,
 * lib/addr.h), and a family field (AF_INET 2, AF_INET6 10) that says which.
 * The maps that only name who owns an address (endpoints, host addresses)
 * have one map per family, so the IPv4 fast path hashes 4 bytes.
 */
#define BERTH_AF_INET 2
#define BERTH_AF_INET6 10

/* Endpoints (berth_ep_by_ip6) and host addresses (berth_host_addr6) by IPv6 address. */
struct berth_ip6_key {
	__be32 addr[4];
};

/* One container's attachment to one network. Same value in both endpoint maps. */
struct berth_endpoint {
	__be32 addr;      /* the container's address */
	__u32 ifindex;    /* host-side veth */
	__u32 network_id; /* controller-assigned, stable while the network exists */
	__u32 flags;      /* enum berth_endpoint_flags */
	__u8 mac[6];      /* the container's eth0 MAC */
	__u8 pad[2];
	__be32 addr6[4];  /* the container's IPv6 address (BERTH_EP_IPV6), zero otherwise */
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
	__be32 subnet6[4]; /* BERTH_EP_IPV6: the IPv6 subnet, its prefix length and gateway */
	__be32 gateway6[4];
	__u32 prefix_len6;
	__u32 pad;
};

struct berth_endpoint_meta {
	char container[BERTH_NAME_LEN];
	char ifname[16];  /* host-side veth name */
	__u32 network_id;
	__u32 pad;
};

/*
 * A bridge berth manages, by its ifindex (struct berth_ifindex_key): the
 * choke point of its network. Written when the network is known, before any
 * of its endpoints, and read by the bridge's own programs (tc_bridge.bpf.c).
 */
struct berth_bridge {
	__u32 network_id;
	__u32 flags;          /* enum berth_endpoint_flags of the network */
};

/* ------------------------------------------------------------------------
 * NAT, publishing and conntrack
 * ------------------------------------------------------------------------ */

/* Per-network facts the packet path needs (keyed by struct berth_network_key). */
struct berth_net {
	__be32 subnet;
	__be32 mask;
	__be32 gateway;
	__u32 flags;          /* enum berth_endpoint_flags */
	__u32 bridge_ifindex;
	__u8 gw_mac[6];       /* the bridge's MAC */
	__u8 pad[2];
	__be32 subnet6[4];    /* BERTH_EP_IPV6: subnet, mask and gateway (the bridge's address) */
	__be32 mask6[4];
	__be32 gateway6[4];
};

/* A published port: (host address or any of its family, port, protocol).
 * Any IPv4 address is ::ffff:0.0.0.0, any IPv6 address ::. */
struct berth_publish_key {
	__be32 host_addr[4];
	__be16 host_port;
	__u8 proto;           /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;          /* BERTH_AF_INET / BERTH_AF_INET6 */
};

enum berth_publish_flags {
	BERTH_PUB_LOOPBACK = 1u << 0, /* published on 127.0.0.1: reachable from the host itself only */
	BERTH_PUB_ROUTED = 1u << 1,   /* a routed network's published container port: the key is
				       * (container address, container port, proto), no host port */
};

struct berth_publish_value {
	__be32 addr[4];       /* container address, in the key's family */
	__be16 port;          /* container port */
	__u16 flags;          /* enum berth_publish_flags */
	__u32 ifindex;        /* container's host-side veth */
	__u32 network_id;
	__u8 mac[6];          /* container's MAC */
	__u8 pad[2];
};

/* A local address of the host (Docker's "addrtype LOCAL"), by address. */
struct berth_host_addr_value {
	__u32 ifindex;
	__u32 flags;
};

/* An uplink: a host interface that brings traffic from outside. */
struct berth_uplink {
	__be32 addr;          /* masquerade source address on this interface */
	__u32 flags;
	__u8 mac[6];
	__u8 pad[2];
	__be32 addr6[4];      /* NAT66 source address on this interface; zero: none */
};

/* 5-tuple as seen on the wire, either family. ICMP / ICMPv6 echo: sport = dport = identifier. */
struct berth_ct_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;          /* BERTH_AF_INET / BERTH_AF_INET6 */
	__u8 pad[2];
};

/*
 * A flow's state, kept equal in both halves (lib/conntrack.h has the
 * transitions). Values are append-only, so they do not follow the order of a
 * connection's life: SYN_SENT and SYN_RECV came after CLOSED.
 */
enum berth_ct_state {
	BERTH_CT_NEW = 0,          /* UDP/ICMP: opened, no reply yet */
	BERTH_CT_ESTABLISHED = 1,  /* TCP: handshake completed (or picked up mid-stream); UDP/ICMP: a reply seen */
	BERTH_CT_CLOSING = 2,      /* TCP: FIN seen */
	BERTH_CT_CLOSED = 3,       /* TCP: an accepted RST seen */
	BERTH_CT_SYN_SENT = 4,     /* TCP: the opener's SYN seen */
	BERTH_CT_SYN_RECV = 5,     /* TCP: the answer's SYN-ACK seen, the opener's ACK not yet */
};

enum berth_ct_flags {
	BERTH_CT_REPLY = 1u << 0,     /* this entry is the reply half of its flow */
	BERTH_CT_HAIRPIN = 1u << 1,   /* container -> host address -> container */
	BERTH_CT_PUBLISHED = 1u << 2, /* opened from outside to a published port */
	BERTH_CT_MASQ = 1u << 3,      /* opened by a container towards the outside */
	BERTH_CT_ASSURED = 1u << 4,   /* TCP handshake completed / a reply seen: never evicted for a new flow */
	BERTH_CT_ROUTED = 1u << 5,    /* opened by a container of a routed network: never translated nor
				       * redirected (identity rewrite), only tracked so its replies get in */
};

/* How a translated packet leaves. */
enum berth_out_kind {
	BERTH_OUT_PEER = 0,   /* bpf_redirect_peer into the container behind out_ifindex */
	BERTH_OUT_MAC = 1,    /* set MACs out_smac/out_dmac, bpf_redirect out of out_ifindex */
	BERTH_OUT_NEIGH = 2,  /* bpf_redirect_neigh out of out_ifindex */
};

/*
 * One half of a flow. Each direction has its own entry, keyed by the tuple
 * the packet arrives with; `rewrite` is the tuple it leaves with. The other
 * half's key is `rewrite` reversed.
 */
struct berth_ct_entry {
	struct berth_ct_key rewrite;
	__u64 created_ns;     /* bpf_ktime_get_ns() */
	__u64 last_seen_ns;
	__u64 packets;
	__u64 bytes;
	__u32 out_ifindex;
	__u32 out_kind;       /* enum berth_out_kind */
	__u32 count_ifindex;  /* container veth to count as to_container, 0 for none */
	__u8 out_smac[6];
	__u8 out_dmac[6];
	__u8 state;           /* enum berth_ct_state */
	__u8 flags;           /* enum berth_ct_flags */
	__u8 tcp_flags_seen;  /* TCP flags OR-ed over this direction, RST aside (since the SYN of a reused tuple) */
	__u8 pad;
	/* TCP, this direction's sequence space as sent (host byte order):
	 * valid once tcp_flags_seen != 0; tcp_ack once it has ACK. */
	__u32 tcp_end;        /* highest seq + payload (+1 for SYN, FIN) sent */
	__u32 tcp_ack;        /* highest acknowledgment number sent */
	__u16 tcp_win;        /* window last advertised, as on the wire (not shifted) */
	__u8 tcp_wscale;      /* enum berth_ct_wscale: the shift this direction's SYN announced (RFC 7323) */
	__u8 pad2;
};

/*
 * berth_ct_entry.tcp_wscale: this direction's window scale, from the
 * window-scale option of its SYN (or SYN-ACK), and whether tcp_win was last
 * written by a SYN (whose window is never scaled). The shift applies to the
 * direction's windows only when both directions announced one (SEEN in both
 * halves), as RFC 7323 and the kernel's tcp_in_window have it.
 */
enum berth_ct_wscale {
	BERTH_CT_WSCALE_SHIFT = 0x0f,   /* mask: the shift, 0-14 */
	BERTH_CT_WSCALE_SEEN = 0x10,    /* this direction's SYN carried the option */
	BERTH_CT_WSCALE_SYN_WIN = 0x20, /* tcp_win came from a SYN: not scaled */
};

/*
 * The record of unassured flows (map berth_ct_ring): a FIFO, one slot per
 * flow created, in creation order. Slot (n % size) holds the n-th flow's
 * orig key; berth_ct_pos says where the next one goes and how far the
 * table-full evictor got. A slot whose flow became assured, expired or was
 * replaced (created_ns differs) is stale and ignored.
 */
struct berth_ct_slot {
	struct berth_ct_key key;  /* the orig half's key */
	__u64 created_ns;         /* the flow's created_ns; 0 = empty */
};

/* Slot 0 of berth_ct_build (per CPU, not pinned, never read by user space):
 * where a new flow's two halves are built, too big for the BPF stack. */
struct berth_ct_pair {
	struct berth_ct_entry orig;
	struct berth_ct_entry reply;
};

/* Slot 0 of berth_ct_keys (per CPU, not pinned, never read by user space):
 * the keys conntrack looks up with, built off the BPF stack (whose 512 bytes
 * a program and the subprograms it calls share). */
struct berth_ct_keybuf {
	struct berth_ct_key lookup;   /* berth_ct_lookup: the packet's tuple */
	struct berth_ct_key partner;  /* berth_ct_partner: a half's rewrite reversed */
	struct berth_ct_key record;   /* berth_ct_record_closing: the orig key to record */
	struct berth_ct_key evict;    /* berth_ct_evict_slot: the slot's key and its reply's */
	struct berth_ct_key evict_reply;
};

/*
 * A packet's transport summary as lib/l4.h (IPv4) and lib/ipv6.h (IPv6)
 * parse it: its fields are documented there. Not a map type itself (the
 * IPv4 paths keep it on the stack); a member of struct berth_l6.
 */
struct berth_l4 {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;      /* ICMP echo: the identifier (sport = dport = id) */
	__be16 dport;
	__u8 proto;
	__u8 frag;         /* enum berth_frag */
	__u8 has_ports;    /* TCP/UDP header or ICMP echo present: the tuple is valid */
	__u8 tcp_flags;    /* TCP: the flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10) */
	__u8 icmp_type;    /* ICMP: type */
	__u8 generic;      /* another protocol (not TCP/UDP/ICMP), any fragment: tracked by
			    * addresses and protocol, ports 0 (lib/generic.h); has_ports stays 0 */
	__u8 pad[2];
	__u32 l3_off;      /* IPv4 header, from the start of the packet */
	__u32 l4_off;      /* transport header, after any IP options */
	__u32 csum_off;    /* transport checksum; 0 = none to fix (ICMP errors, GRE, SCTP, ...) */
	__u32 l3_end;      /* end of the IPv4 datagram (tot_len): nothing past it is read as a header */
	/* TCP, host byte order (0 otherwise): sequence and acknowledgment
	 * numbers, the unscaled window, and tcp_end = seq + payload + 1 for SYN
	 * and for FIN, the payload being what lies between the TCP header and
	 * the datagram's end (l3_end: a BIG TCP packet's too). */
	__u32 tcp_seq;
	__u32 tcp_ack;
	__u32 tcp_end;
	__u16 tcp_win;
	__u8 tcp_wscale;   /* a SYN's window-scale option (lib/tcpopt.h), 0 otherwise */
	__u8 pad2;
};

/*
 * Slot 0 of berth_l6_scratch (lib/nat6.h; per CPU, not pinned, never read by
 * user space): the IPv6 packet's summary (lib/ipv6.h, berth_parse_l6), off
 * the BPF stack. The family-independent fields are the embedded berth_l4's;
 * flags are lib/ipv6.h's BERTH_L6_*.
 */
struct berth_l6 {
	__u8 saddr[16];
	__u8 daddr[16];
	struct berth_l4 l4;  /* saddr = daddr = 0; see the top of lib/ipv6.h */
	__be32 frag_id;      /* the fragment header's identification, as on the wire (atomic ones too); 0 without one */
	__u16 frag_off;      /* the fragment's offset in bytes (host order) */
	__u8 hop_limit;
	__u8 n_ext;          /* extension headers walked */
	__u8 flags;          /* BERTH_L6_* */
	__u8 icmp_code;      /* ICMPv6: code */
	__u8 pad[2];
	__u32 frag_hdr_off;  /* the fragment header, from the start of the packet; 0 = none */
	__u32 quote_off;     /* ICMPv6 error (types 1-4): the quoted IPv6 header; 0 otherwise */
};

/* Slot 0 of berth_ct_pos: positions in berth_ct_ring (both only grow). */
struct berth_ct_pos {
	__u64 head;           /* flows recorded since load; the next goes to head % size */
	__u64 tail;           /* positions below it were examined by the table-full evictor */
};

/*
 * Fragments of translated flows (map berth_frag, lib/frag.h): a datagram's
 * first fragment records its ports under the ARRIVING packet's (saddr,
 * daddr, IP id, proto), so that its later fragments, which carry no ports,
 * find their conntrack half.
 */
struct berth_frag_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__u32 id;             /* host byte order: IPv4's 16-bit identification, IPv6's 32-bit one
			       * (the fragment header's) */
	__u8 proto;
	__u8 family;          /* BERTH_AF_INET / BERTH_AF_INET6 */
	__u8 pad[2];
};

struct berth_frag_ports {
	__be16 sport;         /* as the first fragment arrived (ICMP echo: the identifier twice) */
	__be16 dport;
};

/* Host sockets translated by the cgroup hooks: to restore UDP sources. */
struct berth_sock_key {
	__u64 cookie;
	__be32 addr[4];       /* the container address the socket talks to (IPv4 v4-mapped) */
	__be16 port;
	__u16 pad;
};

struct berth_sock_value {
	__be32 addr[4];       /* the address the application used (IPv4 v4-mapped) */
	__be16 port;
	__u16 pad;
};

/* Dataplane-wide counters (one per-CPU array slot). */
struct berth_global_stats {
	__u64 ct_created;
	__u64 ct_full;
	__u64 nat_port_retries;
	__u64 nat_port_exhausted;
	__u64 sock_translations;
	__u64 events_emitted;     /* drop events written to berth_events */
	__u64 events_suppressed;  /* drop events the monitor's rate limit held back */
	__u64 ct_assured;         /* flows that became assured (handshake completed / reply seen) */
	__u64 ct_evicted;         /* unassured flows evicted to make room for new ones */
};

/* ------------------------------------------------------------------------
 * User policy (Docker's DOCKER-USER): ordered rules for every packet of an
 * inbound flow to a published port, in two banks
 * ------------------------------------------------------------------------ */

#define BERTH_MAX_POLICY_RULES 64
#define BERTH_POLICY_BANKS 2

enum berth_policy_action {
	BERTH_POLICY_END = 0,   /* no more rules: the default (allow) applies */
	BERTH_POLICY_ALLOW = 1,
	BERTH_POLICY_DENY = 2,
};

/*
 * Slot bank * BERTH_MAX_POLICY_RULES + i of berth_policy: rule i of a bank;
 * rules are evaluated in slot order up to the first END.
 */
struct berth_policy_rule {
	__be32 src_addr;      /* IPv4 packets: client address & mask (0/0: any) */
	__be32 src_mask;
	__be32 dst_addr;      /* IPv4 packets: container address (/32) or network subnet */
	__be32 dst_mask;
	__be16 port;          /* published host port, 0 = any */
	__u8 proto;           /* IPPROTO_TCP / IPPROTO_UDP, 0 = any */
	__u8 action;          /* enum berth_policy_action */
	__u8 families;        /* enum berth_policy_families: which families the rule meets */
#ifdef BERTH_TEST_POLICY_LAYOUT
	__s8 pad[3];          /* test-only build: the same bytes under another BTF layout, so the map is
	                       * reset on an "upgrade" (test/integration/upgrade-window.test.ts) */
#else
	__u8 pad[3];
#endif
	__be32 src6_addr[4];  /* IPv6 packets: client address & mask (::/0: any) */
	__be32 src6_mask[4];
	__be32 dst6_addr[4];  /* IPv6 packets: container address (/128) or network subnet6 */
	__be32 dst6_mask[4];
	/* An egress rule (egress = 1, `destination:`) meets what containers send
	 * out of the host instead: src_* (`source:`) and dst_* (`container:` /
	 * `network:`) then both match the sender, out_* the packet's destination,
	 * port its destination port. 0 (all zero, the layout before): an inbound rule. */
	__be32 out_addr;      /* IPv4 packets: the destination & mask */
	__be32 out_mask;
	__be32 out6_addr[4];  /* IPv6 packets: the destination & mask */
	__be32 out6_mask[4];
	__u8 egress;          /* 1: an egress rule (see above) */
	__u8 pad2[3];
};

/*
 * berth_policy_rule.families. 0 is an IPv4-only rule (the layout before
 * IPv6 had a policy); a rule for both families has BERTH_POLICY_V6 and
 * matches each family on its own fields, an IPv6-only one both bits.
 */
enum berth_policy_families {
	BERTH_POLICY_V6 = 1u << 0,     /* IPv6 packets meet the rule (on the *6 fields) */
	BERTH_POLICY_NOT_V4 = 1u << 1, /* IPv4 packets do not */
};

/*
 * Slot 0 of berth_policy_active: the bank packets read. The controller writes
 * the other bank whole, then flips this index, so any packet sees either the
 * old rule set or the new one, never a mix.
 */
struct berth_policy_ctl {
	__u32 bank;           /* 0 or 1 */
	__u32 pad;
	/* bit b: bank b holds an egress rule (set before that bank is flipped in);
	 * 0: what containers send out meets no rule walk at all */
	__u32 egress_banks;
	__u32 pad2;
};

/* ------------------------------------------------------------------------
 * Drop monitor: sampled events in a ring buffer
 * ------------------------------------------------------------------------ */

/* Slot 0 of berth_monitor, written by `berth monitor` while it listens. */
struct berth_monitor_cfg {
	__u32 enabled;
	__u32 rate_per_sec;   /* events per second per CPU */
	__u32 burst;          /* events that may be sent at once after a quiet spell */
	__u32 pad;
};

/* Per-CPU token bucket of the monitor (nanoseconds of credit). */
struct berth_monitor_bucket {
	__u64 last_ns;
	__u64 credit_ns;
};

/* One dropped packet, as seen where it was dropped. */
struct berth_drop_event {
	__u64 ts_ns;          /* bpf_ktime_get_ns() */
	__u32 ifindex;
	__u32 reason;         /* enum berth_drop_reason */
	__be32 saddr[4];      /* either family: IPv4 as ::ffff:a.b.c.d (lib/addr.h); zero when neither */
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 direction;       /* enum berth_direction (uplinks: 0 in, 1 out) */
	__u16 len;            /* packet length, capped at 65535 */
};

/*
 * The contract's own version (src/platform/lifecycle.ts). Bump BERTH_CONTRACT_EPOCH when a map's
 * key or value changes meaning, not only layout: a pinned dataplane written with a higher epoch is
 * newer than this build, and berth refuses to downgrade it unless told --force. A member added to
 * a struct must mean "as before" when zero: a map whose layout changed is migrated member by member
 * (by name), the new members zero.
 */
enum berth_contract_version {
	BERTH_CONTRACT_EPOCH = 1,
};

/* What the pinned dataplane is (berth_version, one entry at key 0), written by the berth that
 * loaded it or last replaced its programs. */
struct berth_version {
	__u32 epoch;      /* BERTH_CONTRACT_EPOCH of that build */
	__u32 pad;
	__u64 layout;     /* hash of every map's key/value layout as BTF describes it */
	__u64 programs;   /* hash of the program objects and their load-time settings */
	char release[32]; /* that berth's package version, NUL-terminated */
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
	enum berth_publish_flags publish_flags;
	enum berth_ct_state ct_state;
	enum berth_ct_flags ct_flags;
	enum berth_ct_wscale ct_wscale;
	enum berth_out_kind out_kind;
	enum berth_policy_action policy_action;
	enum berth_policy_families policy_families;
	struct berth_drop_event event; /* the ring buffer's record type has no map key/value */
	enum berth_contract_version contract_version;
};

#endif /* BERTH_CONTRACT_H */
