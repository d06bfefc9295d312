/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * counters.h — per-CPU packet/byte counters per (program, reason), and the
 * one place where a reason becomes an action (and a drop a drop event for
 * `bpfnet monitor`, drops.h). Helpers return a reason; the
 * entry point counts it and turns it into its hook's verdict (Cilium's
 * "return a drop reason, the caller counts" pattern).
 *
 * BPF only.
 */
#ifndef BPFNET_COUNTERS_H
#define BPFNET_COUNTERS_H

#include "bpfnet_shared.h"
#include "ctx.h"
#include "drops.h"
#include "maps.h"
#include "parse.h"

/* `p` holds whatever the parser got to; `ifindex` is the ingress interface. */
static __always_inline enum pkt_action account(enum bpfnet_program prog, enum bpfnet_reason reason,
					       const struct pkt *pkt, const struct parsed *p,
					       __u32 ifindex)
{
	__u32 index = BPFNET_COUNTER_INDEX(prog, reason);
	struct bpfnet_counter *counter;

	counter = bpf_map_lookup_elem(&BPFNET_MAP_COUNTERS, &index);
	if (counter) {
		/* Per-CPU slot: no other CPU writes it, no atomics needed. */
		counter->packets += 1;
		counter->bytes += pkt->len;
	}
	if (reason < BPFNET_REASON_DROP_FIRST)
		return PKT_PASS;
	report_drop(prog, reason, pkt, p, ifindex);
	return PKT_DROP;
}

#endif /* BPFNET_COUNTERS_H */
