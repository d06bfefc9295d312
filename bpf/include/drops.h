/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * drops.h — drop events for `bpfnet monitor`. Only dropped packets get here,
 * after they were counted, so allowed traffic pays nothing. A per-CPU
 * one-second window caps the events per CPU (BPFNET_DROP_EVENTS_PER_SEC):
 * under a flood of drops the ring and its reader see a sample, and the
 * suppressed ones are counted; the reason counters stay exact.
 *
 * BPF only.
 */
#ifndef BPFNET_DROPS_H
#define BPFNET_DROPS_H

#include <bpf/bpf_helpers.h>
#include "bpfnet_shared.h"
#include "ctx.h"
#include "maps.h"
#include "parse.h"

#define NSEC_PER_SEC 1000000000ULL

/*
 * Whether this CPU may emit one more event in the current window. Runs for
 * every drop, so under a flood it is the whole cost of the monitor (~30–50 ns
 * per dropped packet in `bpfnet bench micro`). The coarse clock (the last
 * tick's time, no clocksource read) is plenty for a one-second window and
 * saves ~15–25 ns per drop over bpf_ktime_get_ns.
 */
static __always_inline int drop_event_admitted(void)
{
	struct bpfnet_drop_rate *rate;
	__u32 zero = 0;
	__u64 now;

	rate = bpf_map_lookup_elem(&BPFNET_MAP_DROP_RATE, &zero);
	if (!rate)
		return 0;
	now = bpf_ktime_get_coarse_ns();
	if (now - rate->window_start_ns >= NSEC_PER_SEC) {
		rate->window_start_ns = now;
		rate->emitted = 0;
	}
	if (rate->emitted >= BPFNET_DROP_EVENTS_PER_SEC) {
		rate->suppressed += 1;
		return 0;
	}
	rate->emitted += 1;
	return 1;
}

static __always_inline void drop_event_lost(void)
{
	struct bpfnet_drop_rate *rate;
	__u32 zero = 0;

	rate = bpf_map_lookup_elem(&BPFNET_MAP_DROP_RATE, &zero);
	if (rate)
		rate->lost += 1;
}

/* Reports a dropped packet; `p` holds whatever the parser got to. */
static __always_inline void report_drop(enum bpfnet_program prog, enum bpfnet_reason reason,
					const struct pkt *pkt, const struct parsed *p,
					__u32 ifindex)
{
	struct bpfnet_drop_event *event;

	if (!drop_event_admitted())
		return;
	event = bpf_ringbuf_reserve(&BPFNET_MAP_DROPS, sizeof(*event), 0);
	if (!event) {
		drop_event_lost(); /* the reader is behind */
		return;
	}
	event->timestamp_ns = bpf_ktime_get_ns();
	event->ifindex = ifindex;
	event->program = prog;
	event->reason = reason;
	event->proto = p->proto;
	event->flags = 0;
	if (p->ipv4)
		event->flags |= BPFNET_DROP_F_IPV4;
	if (p->has_ports)
		event->flags |= BPFNET_DROP_F_PORTS;
	if (p->nonfirst_fragment)
		event->flags |= BPFNET_DROP_F_FRAGMENT;
	event->saddr = p->saddr;
	event->daddr = p->daddr;
	event->sport = p->has_ports ? p->sport : 0;
	event->dport = p->has_ports ? p->dport : 0;
	event->len = pkt->len;
	bpf_ringbuf_submit(event, 0);
}

#endif /* BPFNET_DROPS_H */
