// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * port.bpf.c — the port program: runs on the ingress of every bridge port
 * (the host-side veth of a container), i.e. on every packet a container
 * sends, and decides rows 1-7 of the policy table. tc is the default hook
 * (cheaper than XDP for socket traffic on a veth, which must otherwise turn
 * each skb into an xdp_buff); XDP is offered with `--port-hook xdp`.
 * Both entry points share policy.h through the ctx.h shim.
 *
 * Fast path (BPFNET_CFG_FAST_PATH, fastpath.h): an allowed frame between two
 * containers is handed straight to the destination's port instead of the
 * bridge. tc uses bpf_redirect_peer, which puts the skb on the ingress of the
 * destination container's eth0 (its namespace's stack; the bridge and the
 * destination's host-side veth never see it), and only to a port in
 * bn_fp_tx. XDP redirects through the bn_fp_tx DEVMAP, whose entries exist
 * only for ports whose container eth0 has NAPI (GRO), arranged by the control
 * plane; the kernel removes an entry when its device goes.
 *
 * License: GPL-2.0-only OR BSD-2-Clause (the kernel needs a GPL-compatible
 * license for the helpers used here).
 */
#include "ctx.h"
#include "counters.h"
#include "fastpath.h"
#include "policy.h"

SEC("tc")
int bpfnet_port_tc(struct __sk_buff *skb)
{
	const struct bpfnet_config *cfg;
	enum bpfnet_fastpath_event event;
	enum bpfnet_reason reason;
	struct parsed p = {};
	struct pkt pkt;
	__u32 port = 0;
	long redirect;

	pkt_from_skb(skb, &pkt);
	reason = port_policy(&pkt, &p, &cfg, skb->ifindex);
	if (account(BPFNET_PROG_PORT_TC, reason, &pkt, &p, skb->ifindex) == PKT_DROP)
		return TC_ACT_SHOT;

	event = port_fast_path(cfg, &p, reason, skb->ifindex, &port);
	/* bpf_redirect_peer to a device that is gone drops the packet. bn_fp_tx
	 * holds only ports the control plane arranged, and the kernel removes
	 * a device's entry the moment it unregisters: a stale bn_containers
	 * entry (a container gone, its address already someone else's) then
	 * falls back to the bridge instead of blackholing. */
	if (event == BPFNET_FP_HIT && !bpf_map_lookup_elem(&BPFNET_MAP_FP_TX, &port))
		event = BPFNET_FP_UNCONFIRMED;
	if (event == BPFNET_FP_HIT) {
		/* The skb keeps its checksum state and GSO layout; the peer
		 * switch scrubs it (pkt_type HOST) as a veth crossing would. */
		redirect = bpf_redirect_peer(port, 0);
		if (redirect == TC_ACT_REDIRECT) {
			fp_account(BPFNET_PROG_PORT_TC, BPFNET_FP_HIT, &pkt);
			return TC_ACT_REDIRECT;
		}
		event = BPFNET_FP_REDIRECT;
	}
	fp_account(BPFNET_PROG_PORT_TC, event, &pkt);
	return TC_ACT_OK;
}

SEC("xdp")
int bpfnet_port_xdp(struct xdp_md *xdp)
{
	const struct bpfnet_config *cfg;
	enum bpfnet_fastpath_event event;
	enum bpfnet_reason reason;
	struct parsed p = {};
	struct pkt pkt;
	__u32 port = 0;
	long redirect;

	pkt_from_xdp(xdp, &pkt);
	reason = port_policy(&pkt, &p, &cfg, xdp->ingress_ifindex);
	if (account(BPFNET_PROG_PORT_XDP, reason, &pkt, &p, xdp->ingress_ifindex) == PKT_DROP)
		return XDP_DROP;

	event = port_fast_path(cfg, &p, reason, xdp->ingress_ifindex, &port);
	if (event == BPFNET_FP_HIT)
		event = xdp_source_checks(xdp->ingress_ifindex);
	if (event == BPFNET_FP_HIT) {
		/* No entry (no NAPI at the destination): XDP_PASS, the bridge takes it. */
		redirect = bpf_redirect_map(&BPFNET_MAP_FP_TX, port, XDP_PASS);
		if (redirect == XDP_REDIRECT) {
			fp_account(BPFNET_PROG_PORT_XDP, BPFNET_FP_HIT, &pkt);
			return XDP_REDIRECT;
		}
		event = BPFNET_FP_NO_NAPI;
	}
	fp_account(BPFNET_PROG_PORT_XDP, event, &pkt);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
