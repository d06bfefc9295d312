/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bench_shared.h — what the programs of `bpfnet bench` (bench_gen.bpf.c, the
 * packet generator, and bench_sink.bpf.c, the counting receiver) share with
 * their Swift side, Sources/BPFNetBench (through the BPFNetBenchShared C
 * module): map names, key/value layouts and sizes.
 *
 * Kept apart from bpfnet_shared.h, which owns what the dataplane's programs
 * and the control plane share: neither of them sees a bench map. The same
 * rules hold here: fixed-width types, explicit padding, a _Static_assert on
 * every size (run by the host compiler too, Sources/BPFNetBenchShared/layout.c).
 *
 * License: dual GPL-2.0-only / BSD-2-Clause so that it can be included in GPL
 * eBPF objects and in the Apache-2.0 Swift code alike.
 */
#ifndef BENCH_SHARED_H
#define BENCH_SHARED_H

#include <linux/types.h>

/* ------------------------------------------------------------------------ */
/* Map names: identifiers on the BPF side, bench_map_name() on the Swift side */
/* (each name written once). Neither object pins its maps.                    */
/* ------------------------------------------------------------------------ */

#define BENCH_MAP_GEN_FLOWS  bn_gen_flows  /* ARRAY[BENCH_GEN_MAX_FLOWS]: __u32 flow -> header */
#define BENCH_MAP_GEN_CONFIG bn_gen_config /* ARRAY[1]: __u32 0 -> struct bench_gen_config */
#define BENCH_MAP_SINK_COUNT bn_sink_count /* PERCPU_ARRAY[1]: __u32 0 -> __u64 packets */

#define BENCH_XSTR(x) BENCH_STR(x)
#define BENCH_STR(x)  #x

/* ------------------------------------------------------------------------ */
/* bench_gen: one frame header template per flow, picked round-robin.        */
/* ------------------------------------------------------------------------ */

#define BENCH_GEN_MAX_FLOWS  65536
#define BENCH_GEN_HEADER_LEN 42 /* Ethernet 14 + IPv4 20 + UDP 8 */
#define BENCH_GEN_SLOT_LEN   48 /* template slot, 8-byte aligned  */

/*
 * A template slot: the first BENCH_GEN_HEADER_LEN bytes are the frame's
 * header, the rest is 0. Words, not bytes: clang would copy a byte array one
 * byte at a time.
 */
struct bench_gen_header {
	__u64 words[BENCH_GEN_SLOT_LEN / 8];
};
_Static_assert(sizeof(struct bench_gen_header) == 48, "bench_gen_header layout");

struct bench_gen_config {
	__u32 flows;	/* templates in use, 1..BENCH_GEN_MAX_FLOWS; 0 drops */
	__u32 reserved; /* 0 */
};
_Static_assert(sizeof(struct bench_gen_config) == 8, "bench_gen_config layout");

/* ------------------------------------------------------------------------ */
/* Helpers for the Swift side only.                                          */
/* ------------------------------------------------------------------------ */
#ifndef __bpf__
enum bench_map_id {
	BENCH_MAP_ID_GEN_FLOWS,
	BENCH_MAP_ID_GEN_CONFIG,
	BENCH_MAP_ID_SINK_COUNT,
	BENCH_MAP_ID_COUNT,
};

static inline const char *bench_map_name(enum bench_map_id id)
{
	switch (id) {
	case BENCH_MAP_ID_GEN_FLOWS:
		return BENCH_XSTR(BENCH_MAP_GEN_FLOWS);
	case BENCH_MAP_ID_GEN_CONFIG:
		return BENCH_XSTR(BENCH_MAP_GEN_CONFIG);
	case BENCH_MAP_ID_SINK_COUNT:
		return BENCH_XSTR(BENCH_MAP_SINK_COUNT);
	case BENCH_MAP_ID_COUNT:
		break;
	}
	return "";
}
#endif /* !__bpf__ */

#endif /* BENCH_SHARED_H */
