// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bench_sink.bpf.c — the receiver of `bpfnet bench`: a tc clsact ingress
 * program on the receiving container's eth0 that counts every IPv4 UDP
 * packet and drops it.
 *
 * Why tc ingress on the container side: every path delivers there, the
 * bridge, XDP_PASS on the port, and a `bpf_redirect_peer` fast path alike
 * (redirect_peer injects into eth0's ingress and bypasses eth0's XDP hook,
 * so an XDP counter would miss it). Why drop: the receiver's own stack (UDP
 * lookup, "port unreachable" replies) costs the same on every path and would
 * only dilute the difference between them; dropping here measures the
 * forwarding path up to the container.
 *
 * Other packets (there should be none: IPv6 is off and neighbours are static)
 * pass uncounted, so a stray frame never looks like a delivered one.
 *
 * Map (name in bench_shared.h; read by Sink in Sources/BPFNetBench/Host.swift):
 *   bn_sink_count  PERCPU_ARRAY[1]  __u32 0 -> __u64 packets
 *
 * License: GPL-2.0-only OR BSD-2-Clause.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "bench_shared.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} BENCH_MAP_SINK_COUNT SEC(".maps");

SEC("tc")
int bpfnet_sink_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 zero = 0;
	__u64 *count;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
		return TC_ACT_OK;

	/* Per-CPU slot: no other CPU writes it, no atomics needed. */
	count = bpf_map_lookup_elem(&BENCH_MAP_SINK_COUNT, &zero);
	if (count)
		*count += 1;
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
