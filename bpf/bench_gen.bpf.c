// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bench_gen.bpf.c — the packet generator of `bpfnet bench`.
 *
 * User space runs bpfnet_gen_xdp through BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES and ingress_ifindex = the sending container's
 * eth0. Every repetition is a real frame: XDP_TX turns into a redirect back
 * out of eth0 (net/bpf/test_run.c), so each frame enters the veth peer, the
 * bridge port, exactly as if the container had sent it. The peer needs NAPI
 * (GRO or an XDP program on it) or every frame is dropped without a trace
 * (xdp:xdp_redirect_err, err -95).
 *
 * Header restoring and flows: live-frame pages are recycled without copying
 * data_in again, so whatever a path rewrote in place (TTL, checksums, MACs
 * on a routed or NATed path) would go out again on the next use of the page.
 * So every frame gets its whole header (Ethernet + IPv4 + UDP, 42 bytes)
 * written from a template, and the template is picked round-robin from
 * bn_gen_flows[0 .. flows-1]: that is how one generator spreads traffic over
 * many allowed flows (source addresses and ports), so large maps and rule
 * positions are exercised instead of one hot key.
 *
 * The templates live in an ARRAY map, not in `const volatile` globals: the
 * Swift BPF layer does not rewrite .rodata before load, and a map value is
 * always read with real loads (a template in .rodata read through a cast that
 * drops `volatile` is constant-folded to zeros by clang).
 *
 * Map names and layouts are in bench_shared.h, shared with
 * Sources/BPFNetBench/Generator.swift, which writes the maps (and checks the
 * key/value sizes against the object before use):
 *   bn_gen_flows   ARRAY[BENCH_GEN_MAX_FLOWS]  __u32 flow -> 48 bytes, the
 *                  first BENCH_GEN_HEADER_LEN of which are the frame header
 *   bn_gen_config  ARRAY[1]  __u32 0 -> struct bench_gen_config
 *
 * License: GPL-2.0-only OR BSD-2-Clause.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "bench_shared.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BENCH_GEN_MAX_FLOWS);
	__type(key, __u32);
	__type(value, struct bench_gen_header);
} BENCH_MAP_GEN_FLOWS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_gen_config);
} BENCH_MAP_GEN_CONFIG SEC(".maps");

/*
 * The next template. One generator thread drives the program, pinned to one
 * CPU, so a plain global (no atomics) is enough; a race would only repeat a
 * flow.
 */
__u32 bench_gen_next_flow;

SEC("xdp")
int bpfnet_gen_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bench_gen_header *header;
	struct bench_gen_config *config;
	__u32 zero = 0;
	__u32 flow;

	config = bpf_map_lookup_elem(&BENCH_MAP_GEN_CONFIG, &zero);
	if (!config || config->flows == 0)
		return XDP_DROP; /* not configured: nothing leaves, the bench sees the loss */

	flow = bench_gen_next_flow;
	if (flow >= config->flows)
		flow = 0;
	bench_gen_next_flow = flow + 1;

	header = bpf_map_lookup_elem(&BENCH_MAP_GEN_FLOWS, &flow);
	if (!header)
		return XDP_DROP;
	if (data + BENCH_GEN_HEADER_LEN > data_end)
		return XDP_DROP;
	/* 5 words + 2 bytes = 42. Unaligned packet stores are fine on the
	 * architectures this runs on (no BPF_F_STRICT_ALIGNMENT). */
	((__u64 *)data)[0] = header->words[0];
	((__u64 *)data)[1] = header->words[1];
	((__u64 *)data)[2] = header->words[2];
	((__u64 *)data)[3] = header->words[3];
	((__u64 *)data)[4] = header->words[4];
	*(__u16 *)(data + 40) = *(__u16 *)&header->words[5];
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
