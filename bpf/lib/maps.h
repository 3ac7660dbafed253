/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The maps berth's programs share, all typed by berth_contract.h and pinned by
 * name under the controller's pin root so that programs loaded later (and a
 * restarted daemon) find the same maps. Sizes are defaults; the controller may
 * override max_entries before load. */
#ifndef BERTH_LIB_MAPS_H
#define BERTH_LIB_MAPS_H

#include "kernel.h"
#include "berth_contract.h"

#define BERTH_MAX_ENDPOINTS 4096
#define BERTH_MAX_NETWORKS 1024
#define BERTH_MAX_PUBLISH 65536
#define BERTH_MAX_CT 262144
#define BERTH_MAX_CT_UNASSURED (BERTH_MAX_CT / 4) /* flows: half the table's entries */

/* host-side veth ifindex -> endpoint (the sender) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BERTH_MAX_ENDPOINTS);
	__type(key, struct berth_ifindex_key);
	__type(value, struct berth_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_ep_by_ifindex SEC(".maps");

/* container address -> endpoint (the destination) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BERTH_MAX_ENDPOINTS);
	__type(key, struct berth_ip_key);
	__type(value, struct berth_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_ep_by_ip SEC(".maps");

/* container IPv6 address -> endpoint (the destination) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BERTH_MAX_ENDPOINTS);
	__type(key, struct berth_ip6_key);
	__type(value, struct berth_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_ep_by_ip6 SEC(".maps");

/* per-veth, per-direction counters; entries are created by the controller */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, BERTH_MAX_ENDPOINTS * BERTH_DIR_MAX);
	__type(key, struct berth_counter_key);
	__type(value, struct berth_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_counters SEC(".maps");

/* controller-only metadata (never touched by the packet path) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct berth_network_key);
	__type(value, struct berth_network_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_net_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BERTH_MAX_ENDPOINTS);
	__type(key, struct berth_ifindex_key);
	__type(value, struct berth_endpoint_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_ep_meta SEC(".maps");

/* network id -> what the packet path needs of the network */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BERTH_MAX_NETWORKS);
	__type(key, struct berth_network_key);
	__type(value, struct berth_net);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_net SEC(".maps");

/* the bridges berth manages, by ifindex: which network each one guards */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BERTH_MAX_NETWORKS);
	__type(key, struct berth_ifindex_key);
	__type(value, struct berth_bridge);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_bridge SEC(".maps");

/* published ports, both families: exact host address first, then any of the family */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BERTH_MAX_PUBLISH);
	__type(key, struct berth_publish_key);
	__type(value, struct berth_publish_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_publish SEC(".maps");

/* the host's own addresses (Docker's addrtype LOCAL) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct berth_ip_key);
	__type(value, struct berth_host_addr_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_host_addr SEC(".maps");

/* the host's own IPv6 addresses */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct berth_ip6_key);
	__type(value, struct berth_host_addr_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_host_addr6 SEC(".maps");

/* uplinks by ifindex: their masquerade address */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct berth_ifindex_key);
	__type(value, struct berth_uplink);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_uplink SEC(".maps");

/* conntrack: a plain hash, so nothing is evicted behind berth's back; the
 * packet path evicts only unassured flows, oldest first, through the record
 * below (lib/conntrack.h); expired entries are swept by the controller */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BERTH_MAX_CT);
	__type(key, struct berth_ct_key);
	__type(value, struct berth_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_ct SEC(".maps");

/* the unassured flows in creation order (struct berth_ct_slot): one slot per
 * flow that may wait unassured at once; the controller sizes it and sets
 * berth_ct_ring_size to the same number */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BERTH_MAX_CT_UNASSURED);
	__type(key, __u32);
	__type(value, struct berth_ct_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_ct_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct berth_ct_pos);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_ct_pos SEC(".maps");

/* each program's room to build a new flow in (per CPU; not pinned, not shared) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct berth_ct_pair);
} berth_ct_build SEC(".maps");

/* conntrack's lookup keys (per CPU; not pinned, not shared) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct berth_ct_keybuf);
} berth_ct_keys SEC(".maps");

/* host sockets translated at connect/sendmsg, for recvmsg's reverse step */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct berth_sock_key);
	__type(value, struct berth_sock_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_sock SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct berth_global_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_stats SEC(".maps");

/* user policy rules, two banks in slot order (see berth_contract.h) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BERTH_MAX_POLICY_RULES * BERTH_POLICY_BANKS);
	__type(key, __u32);
	__type(value, struct berth_policy_rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_policy SEC(".maps");

/* packets and bytes matched by each policy slot (both banks) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BERTH_MAX_POLICY_RULES * BERTH_POLICY_BANKS);
	__type(key, __u32);
	__type(value, struct berth_pb);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_policy_hits SEC(".maps");

/* which policy bank is in force */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct berth_policy_ctl);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_policy_active SEC(".maps");

/* drop events for `berth monitor` */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct berth_monitor_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_monitor SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct berth_monitor_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_monitor_bucket SEC(".maps");

/* the pinned dataplane's contract version (src/platform/lifecycle.ts); no program reads it */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct berth_version);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} berth_version SEC(".maps");

#endif
