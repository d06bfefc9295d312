/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h — every map of the dataplane. Both objects (port, ext) include this
 * file; the maps are pinned by name under the control plane's pin directory,
 * so whichever object loads second reuses the first one's maps and both
 * programs see one state. Layouts live in bpfnet_shared.h.
 *
 * BPF only.
 */
#ifndef BPFNET_MAPS_H
#define BPFNET_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "bpfnet_shared.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpfnet_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_CONFIG SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNET_MAX_CONTAINERS);
	__type(key, __be32);
	__type(value, struct bpfnet_container);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_CONTAINERS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNET_MAX_CONTAINERS);
	__type(key, struct bpfnet_mac_key);
	__type(value, __be32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_MACS SEC(".maps");

/* Written by user space with the port attachments: the container behind each
 * port, by ifindex; low ifindexes in an array (inlined lookup), the rest in a hash. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BPFNET_PORT_SLOTS);
	/* The control plane reads the slots through a mapping (fast to scan). */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct bpfnet_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_PORTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNET_MAX_CONTAINERS);
	__type(key, __u32);
	__type(value, struct bpfnet_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_PORTS_HIGH SEC(".maps");

/* The entry of port `ifindex`: NULL only for a high ifindex without one.
 * Whether it names the container is BPFNET_PORT_KNOWN. */
static __always_inline const struct bpfnet_port *port_lookup(__u32 ifindex)
{
	const struct bpfnet_port *port;

	if (ifindex < BPFNET_PORT_SLOTS) {
		port = bpf_map_lookup_elem(&BPFNET_MAP_PORTS, &ifindex);
		/* Keep this call apart from the one below: clang would otherwise
		 * merge the two into one call on a map chosen at run time, which
		 * the verifier cannot inline (~14 ns more per frame). */
		asm volatile("" : "+r"(port));
		return port;
	}
	return bpf_map_lookup_elem(&BPFNET_MAP_PORTS_HIGH, &ifindex);
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BPFNET_MAX_NETWORKS);
	__type(key, __u32);
	__type(value, struct bpfnet_network);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_NETWORKS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BPFNET_MAX_NETWORKS);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct bpfnet_subnet_key);
	__type(value, struct bpfnet_subnet);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_SUBNETS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BPFNET_MAX_PEER_SUBNETS);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct bpfnet_subnet_key);
	__type(value, struct bpfnet_peer);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_PEERS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BPFNET_MAX_NETWORKS);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct bpfnet_subnet6_key);
	__type(value, struct bpfnet_subnet6);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_SUBNETS6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNET_MAX_CONTAINERS);
	__type(key, struct bpfnet_addr6);
	__type(value, struct bpfnet_container);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_CONTAINERS6 SEC(".maps");

/* The network a frame's port is on (an all-zero record if unreadable). */
static const struct bpfnet_network empty_network;

static __always_inline const struct bpfnet_network *network_get(__u32 id)
{
	const struct bpfnet_network *net = bpf_map_lookup_elem(&BPFNET_MAP_NETWORKS, &id);

	return net ? net : &empty_network;
}

/* The Docker network whose subnet holds `addr`, or NULL. */
static __always_inline const struct bpfnet_subnet *subnet_lookup(__be32 addr)
{
	struct bpfnet_subnet_key key = { .prefixlen = 32, .addr = addr };

	return bpf_map_lookup_elem(&BPFNET_MAP_SUBNETS, &key);
}

/* The Docker network whose IPv6 subnet holds the 16 bytes at `addr`, or NULL. */
static __always_inline const struct bpfnet_subnet6 *subnet6_lookup(const __u8 *addr)
{
	struct bpfnet_subnet6_key key = { .prefixlen = 128 };

	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	return bpf_map_lookup_elem(&BPFNET_MAP_SUBNETS6, &key);
}

/* The container whose IPv6 address is the 16 bytes at `addr`, or NULL. */
static __always_inline const struct bpfnet_container *container6_lookup(const __u8 *addr)
{
	struct bpfnet_addr6 key;

	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	return bpf_map_lookup_elem(&BPFNET_MAP_CONTAINERS6, &key);
}

/* The peer host whose container subnets hold `addr`, or NULL. */
static __always_inline const struct bpfnet_peer *peer_lookup(__be32 addr)
{
	struct bpfnet_subnet_key key = { .prefixlen = 32, .addr = addr };

	return bpf_map_lookup_elem(&BPFNET_MAP_PEERS, &key);
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNET_MAX_CONTAINERS);
	__type(key, __be32);
	__type(value, struct bpfnet_container_name);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_NAMES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNET_MAX_LINK_RULES);
	__type(key, struct bpfnet_link_key);
	__type(value, struct bpfnet_link_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_LINKS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNET_MAX_PUBLISHED);
	__type(key, struct bpfnet_published_key);
	__type(value, struct bpfnet_published_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_PUBLISHED SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNET_MAX_EXT_IFS);
	__type(key, __u32);
	__type(value, struct bpfnet_ext_if);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_EXT_IFS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BPFNET_MAX_ALLOW_SRC);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct bpfnet_allow_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_ALLOW_SRC SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BPFNET_MAX_ALLOW_SRC);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bpfnet_allow6_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_ALLOW_SRC6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BPFNET_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, struct bpfnet_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_COUNTERS SEC(".maps");

/* Written by user space only; kept with the maps so a crashed `load` can be undone. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNET_MAX_ATTACH);
	__type(key, struct bpfnet_attach_key);
	__type(value, struct bpfnet_attach_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_ATTACH SEC(".maps");

/* Fast path: per-CPU events per (program, event), like bn_counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BPFNET_FP_SLOTS);
	__type(key, __u32);
	__type(value, struct bpfnet_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_FP_COUNTERS SEC(".maps");

/* Written by user space only: what was arranged on each interface (bpfnet_shared.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNET_MAX_FP_IFS);
	__type(key, __u32);
	__type(value, struct bpfnet_fp_if);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_FP_IFS SEC(".maps");

/* Sampled drop events for `bpfnet monitor`, and their per-CPU rate limit. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, BPFNET_DROP_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_DROPS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpfnet_drop_rate);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_DROP_RATE SEC(".maps");

/*
 * eBPF NAT connections (bpfnet_shared.h, nat.h). LRU: a full table evicts the
 * least recently used entry instead of refusing a new connection; a
 * connection that lost one of its two entries gets it back from the other
 * (nat.h). Kept across loads like every pinned map, so connections survive an
 * agent restart.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BPFNET_MAX_NAT_ENTRIES);
	__type(key, struct bpfnet_nat_key);
	__type(value, struct bpfnet_nat_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_NAT SEC(".maps");

/* Fragmented replies of eBPF NAT connections (bpfnet_shared.h, nat.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BPFNET_MAX_NAT_FRAGS);
	__type(key, struct bpfnet_nat_frag_key);
	__type(value, struct bpfnet_nat_frag);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BPFNET_MAP_NAT_FRAGS SEC(".maps");

static __always_inline struct bpfnet_config *config_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&BPFNET_MAP_CONFIG, &zero);
}

#endif /* BPFNET_MAPS_H */
