// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * port.bpf.c — the port program: runs on the ingress of every bridge port
 * (the host-side veth of a container), i.e. on every packet a container
 * sends, and decides rows 1-7 of the policy table. tc is the default hook
 * (cheaper than XDP for socket traffic on a veth, which must otherwise turn
 * each skb into an xdp_buff); XDP is offered with `--port-hook xdp`.
 * Both entry points share policy.h through the ctx.h shim.
 *
 * License: GPL-2.0-only OR BSD-2-Clause (the kernel needs a GPL-compatible
 * license for the helpers used here).
 */
#include "ctx.h"
#include "counters.h"
#include "policy.h"

SEC("tc")
int bpfnet_port_tc(struct __sk_buff *skb)
{
	struct pkt pkt;

	pkt_from_skb(skb, &pkt);
	return tc_action(account(BPFNET_PROG_PORT_TC, port_policy(&pkt), &pkt));
}

SEC("xdp")
int bpfnet_port_xdp(struct xdp_md *xdp)
{
	struct pkt pkt;

	pkt_from_xdp(xdp, &pkt);
	return xdp_action(account(BPFNET_PROG_PORT_XDP, port_policy(&pkt), &pkt));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
