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
 * Cross-host fast path (fastpath.h, port_peer_route): a packet to a peer
 * host's containers leaves through the ext interface the FIB names (tc:
 * bpf_redirect to its egress), MACs rewritten and TTL decremented, unless the
 * sending network needs conntrack for the replies (icc off, peerPolicy icc).
 *
 * eBPF NAT (--nat ebpf, nat.h): a reply of a connection the ext program
 * translated is translated back here (tc only) and sent out of the interface
 * the FIB names.
 *
 * License: GPL-2.0-only OR BSD-2-Clause (the kernel needs a GPL-compatible
 * license for the helpers used here).
 */
#include "ctx.h"
#include "counters.h"
#include "fastpath.h"
#include "nat.h"
#include "policy.h"

SEC("tc")
int bpfnet_port_tc(struct __sk_buff *skb)
{
	const struct bpfnet_config *cfg;
	enum bpfnet_fastpath_event event;
	enum bpfnet_reason reason;
	struct parsed p = {};
	struct bpf_fib_lookup fib = {};
	struct pkt pkt;
	__u32 port = 0;
	long redirect;

	pkt_from_skb(skb, &pkt);
	reason = port_policy(&pkt, &p, &cfg, skb->ifindex);
	if (account(BPFNET_PROG_PORT_TC, reason, &pkt, &p, skb->ifindex) == PKT_DROP)
		return TC_ACT_SHOT;

	if (reason == BPFNET_PASS_OUTSIDE) {
		/* A reply of an eBPF NAT connection (nat.h): translated back and
		 * sent out, or, when the stack must take it, left as it is. */
		event = port_nat_reply(skb, cfg, &p);
		if (event == BPFNET_FP_HIT) {
			fp_account(BPFNET_PROG_PORT_TC, BPFNET_FP_HIT, &pkt);
			return TC_ACT_REDIRECT;
		}
		if (event != BPFNET_FP_VERDICT) {
			fp_account(BPFNET_PROG_PORT_TC, event, &pkt);
			/* Rewritten but not sent: never let the stack route it twice. */
			return event == BPFNET_FP_REDIRECT ? TC_ACT_SHOT : TC_ACT_OK;
		}
		/* To a peer host's containers: straight out of the ext interface
		 * (bpf_redirect to its egress; the skb keeps its checksum state
		 * and GSO layout, which that device finishes as the stack would). */
		event = port_peer_route(skb, cfg, &pkt, &p, skb->ifindex, 0, &fib);
		if (event == BPFNET_FP_HIT) {
			/* Only invalid flags make the redirect fail; the frame is
			 * rewritten by then, so it is dropped, never routed twice. */
			if (port_peer_rewrite(&pkt, &fib) == 0 &&
			    bpf_redirect(fib.ifindex, 0) == TC_ACT_REDIRECT) {
				fp_account(BPFNET_PROG_PORT_TC, BPFNET_FP_HIT, &pkt);
				return TC_ACT_REDIRECT;
			}
			fp_account(BPFNET_PROG_PORT_TC, BPFNET_FP_REDIRECT, &pkt);
			return TC_ACT_SHOT;
		}
		fp_account(BPFNET_PROG_PORT_TC, event, &pkt);
		return TC_ACT_OK;
	}

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
	struct bpf_fib_lookup fib = {};
	struct pkt pkt;
	__u32 port = 0;
	long redirect;

	pkt_from_xdp(xdp, &pkt);
	reason = port_policy(&pkt, &p, &cfg, xdp->ingress_ifindex);
	if (account(BPFNET_PROG_PORT_XDP, reason, &pkt, &p, xdp->ingress_ifindex) == PKT_DROP)
		return XDP_DROP;

	if (reason == BPFNET_PASS_OUTSIDE) {
		/* To a peer host's containers. XDP could leave only through a
		 * DEVMAP entry for the ext interface (its driver's ndo_xdp_xmit),
		 * which bpfnet does not arrange: a packet that could take the
		 * fast path counts no-napi, and the stack routes it. */
		event = port_peer_route(xdp, cfg, &pkt, &p, xdp->ingress_ifindex, 1, &fib);
		if (event == BPFNET_FP_HIT)
			event = BPFNET_FP_NO_NAPI;
		fp_account(BPFNET_PROG_PORT_XDP, event, &pkt);
		return XDP_PASS;
	}

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
