// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * selftest.bpf.c - tiny programs and maps for the tests of the generic Swift
 * BPF layer (Tests/BPFTests) and the "empty program" baselines of the
 * benchmarks. Nothing here knows about bpfnet's policy.
 *
 * The names bpfnet_empty_xdp and bpfnet_empty_tc are stable: benchmarks
 * look them up.
 *
 * Map layouts are plain integers plus one LPM key, so the Swift tests can
 * use UInt32/UInt64 and one small struct:
 *   st_counters  PERCPU_ARRAY[4]  __u32 index -> __u64 (enum st_counter)
 *   st_config    ARRAY[4]         __u32 index -> __u32 (enum st_config_slot)
 *   st_verdicts  HASH             __be32 IPv4 destination -> __u32 tc verdict
 *   st_marks     LPM_TRIE         struct st_lpm_key (IPv4 source) -> __u32 mark
 *   st_pinned    HASH, pinned by name   __u32 -> __u64
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

enum st_counter {
	ST_XDP_PACKETS = 0,
	ST_XDP_BYTES = 1,
	ST_TC_PACKETS = 2,
	ST_TC_BYTES = 3,
	ST_COUNTER_MAX = 4,
};

enum st_config_slot {
	/* Verdict of st_count_xdp; 0 means XDP_PASS (so XDP_ABORTED cannot be chosen). */
	ST_CONFIG_XDP_VERDICT = 0,
	ST_CONFIG_MAX = 4,
};

/* struct bpf_lpm_trie_key layout: prefix length first, then the address. */
struct st_lpm_key {
	__u32 prefixlen;
	__u8 addr[4]; /* IPv4, network order */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, ST_COUNTER_MAX);
} st_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, ST_CONFIG_MAX);
} st_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u32);
	__uint(max_entries, 1024);
} st_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct st_lpm_key);
	__type(value, __u32);
	__uint(max_entries, 256);
	/* LPM tries must not be preallocated. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} st_marks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} st_pinned SEC(".maps");

static __always_inline void st_count(__u32 packets_slot, __u64 bytes)
{
	__u32 bytes_slot = packets_slot + 1;
	__u64 *value;

	/* Per-CPU slots: no atomics needed, the program cannot be preempted on its CPU. */
	value = bpf_map_lookup_elem(&st_counters, &packets_slot);
	if (value)
		*value += 1;
	value = bpf_map_lookup_elem(&st_counters, &bytes_slot);
	if (value)
		*value += bytes;
}

/* Baseline: the cheapest possible XDP program. */
SEC("xdp")
int bpfnet_empty_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Baseline: the cheapest possible tc program. */
SEC("tc")
int bpfnet_empty_tc(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

/*
 * Counts the frame, swaps the Ethernet addresses (visible in the test run's
 * data out, and what a reflector sending XDP_TX needs) and returns the
 * verdict configured in st_config.
 */
SEC("xdp")
int st_count_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 slot = ST_CONFIG_XDP_VERDICT;
	unsigned char tmp[ETH_ALEN];
	__u32 *verdict;

	st_count(ST_XDP_PACKETS, data_end - data);

	if ((void *)(eth + 1) <= data_end) {
		__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
		__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	}

	verdict = bpf_map_lookup_elem(&st_config, &slot);
	if (verdict && *verdict)
		return *verdict;
	return XDP_PASS;
}

/*
 * Counts the packet; for IPv4, marks it with st_marks[source] (longest
 * prefix, visible in the test run's __sk_buff out) and returns
 * st_verdicts[destination] if present, TC_ACT_OK otherwise.
 */
SEC("tc")
int st_count_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct st_lpm_key lpm = { .prefixlen = 32 };
	struct iphdr *ip;
	__u32 *value;
	__be32 daddr;

	st_count(ST_TC_PACKETS, skb->len);

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;

	__builtin_memcpy(lpm.addr, &ip->saddr, sizeof(lpm.addr));
	value = bpf_map_lookup_elem(&st_marks, &lpm);
	if (value)
		skb->mark = *value;

	daddr = ip->daddr;
	value = bpf_map_lookup_elem(&st_verdicts, &daddr);
	if (value)
		return *value;
	return TC_ACT_OK;
}

/*
 * Rejected by the verifier on purpose: reads the packet without checking
 * data_end. "?" turns autoload off, so the object loads unless a test
 * enables this program to see the verifier's log in the error.
 */
SEC("?tc")
int st_rejected_tc(struct __sk_buff *skb)
{
	unsigned char *data = (void *)(long)skb->data;

	return data[12];
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
