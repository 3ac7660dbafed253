/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The maps berth's programs share, all typed by berth_contract.h and pinned by
 * name under the controller's pin root so that programs loaded later (and a
 * restarted daemon) find the same maps. Sizes are defaults; the controller may
 * override max_entries before load. */
#ifndef BERTH_LIB_MAPS_H
#define BERTH_LIB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "berth_contract.h"

#define BERTH_MAX_ENDPOINTS 4096

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

#endif
