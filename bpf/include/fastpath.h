/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fastpath.h — delivery of packets the policy already allowed, around the
 * bridge (port program) or around the host's routing (ext program). The fast
 * path never changes a verdict: it runs only after a pass, and anything it is
 * not sure of takes the normal path, with the reason counted in
 * bn_fp_counters (enum bpfnet_fastpath_event; docs/verdicts.md "Fast path").
 *
 * BPF only.
 */
#ifndef BPFNET_FASTPATH_H
#define BPFNET_FASTPATH_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include "bpfnet_shared.h"
#include "ctx.h"
#include "maps.h"
#include "parse.h"
#include "policy.h"

#define IP_MF_AND_OFFSET (IP_MORE_FRAGMENTS | IP_FRAGMENT_OFFSET_MASK) /* host order */

/*
 * Redirect targets: a port is in here only while its container's eth0 has
 * NAPI (GRO), so a frame redirected to it by XDP is delivered, never silently
 * dropped (xdp:xdp_redirect_err -95), and only while the device exists: the
 * kernel removes a device's entry when it unregisters, so a stale
 * bn_containers entry never sends a packet into a device that is gone. Key
 * and value: the ifindex. Each object that includes this header (port, ext)
 * has its own, which the control plane fills alike.
 *
 * Not pinned, unlike every other map: the kernel adds BPF_F_RDONLY_PROG to a
 * devmap's flags, which libbpf 1.1 then reads back as a mismatch and refuses
 * to reuse the pin. Each load makes a fresh one, which the control plane
 * fills from bn_fp_ifs (the NAPI flag) in the same process; it goes with the
 * programs that use it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, BPFNET_MAX_FP_IFS);
	__type(key, __u32);
	__type(value, __u32);
} BPFNET_MAP_FP_TX SEC(".maps");

static __always_inline void fp_account(enum bpfnet_program prog, enum bpfnet_fastpath_event event,
				       const struct pkt *pkt)
{
	__u32 index = BPFNET_FP_INDEX(prog, event);
	struct bpfnet_counter *counter;

	counter = bpf_map_lookup_elem(&BPFNET_MAP_FP_COUNTERS, &index);
	if (counter) {
		counter->packets += 1;
		counter->bytes += pkt->len;
	}
}

static __always_inline const struct bpfnet_fp_if *fp_if(__u32 ifindex)
{
	return bpf_map_lookup_elem(&BPFNET_MAP_FP_IFS, &ifindex);
}

static __always_inline __u32 fp_if_flags(__u32 ifindex)
{
	const struct bpfnet_fp_if *fpif = fp_if(ifindex);

	return fpif ? fpif->flags : 0;
}

/*
 * Container -> container: may this allowed packet go straight to the
 * destination's port? Only a bridged unicast IPv4 frame qualifies: addressed
 * (at L2) to the destination container's own MAC, untagged, to another port.
 * Such a frame needs no rewriting: the bridge would forward it unchanged.
 * A frame for the bridge's MAC is being routed by the host and stays there.
 * On a hit, *port is the destination's host-side veth.
 */
static __always_inline enum bpfnet_fastpath_event port_fast_path(const struct bpfnet_config *cfg,
								 const struct parsed *p,
								 enum bpfnet_reason reason,
								 __u32 ingress_ifindex, __u32 *port)
{
	const struct bpfnet_container *dst;

	if (!(cfg->flags & BPFNET_CFG_FAST_PATH))
		return BPFNET_FP_DISABLED;
	switch (reason) {
	case BPFNET_PASS_ICC:
	case BPFNET_PASS_LINK:
	case BPFNET_PASS_LINK_REVERSE:
	case BPFNET_PASS_LINK_FRAGMENT:
		break;
	default:
		return BPFNET_FP_VERDICT; /* host, outside, non-IP, IPv6 to no container, ... */
	}
	if (!p->ipv4)
		return BPFNET_FP_NOT_IPV4;
	if (p->vlan_tags)
		return BPFNET_FP_VLAN;
	dst = bpf_map_lookup_elem(&BPFNET_MAP_CONTAINERS, &p->daddr);
	if (!dst)
		return BPFNET_FP_UNKNOWN_DEST; /* subnet address, broadcast, multicast */
	if (!mac_equal(p->dst_mac, dst->mac))
		return BPFNET_FP_MAC;
	if (dst->port_ifindex == ingress_ifindex || !dst->port_ifindex)
		return BPFNET_FP_SAME_PORT;
	*port = dst->port_ifindex;
	return BPFNET_FP_HIT;
}

/*
 * XDP only: a frame may be redirected from `ingress_ifindex` only when its L4
 * checksum is complete. A veth turns a CHECKSUM_PARTIAL skb into an XDP frame
 * without finishing the checksum, so the receiver would drop it as corrupt;
 * bpfnet marks an interface FULL_CSUM after switching tx checksum offload off
 * at its peer (or when it is no veth at all).
 */
static __always_inline enum bpfnet_fastpath_event xdp_source_checks(__u32 ingress_ifindex)
{
	if (!(fp_if_flags(ingress_ifindex) & BPFNET_FP_IF_FULL_CSUM))
		return BPFNET_FP_PARTIAL_CSUM;
	return BPFNET_FP_HIT;
}

/* TTL - 1 with the incremental header checksum update of RFC 1624 (as ip_decrease_ttl). */
static __always_inline void ipv4_decrease_ttl(struct iphdr *ip)
{
	__u32 check = (__u32)ip->check;

	check += (__u32)bpf_htons(0x0100);
	ip->check = (__sum16)(check + (check >= 0xFFFF));
	ip->ttl--;
}

/*
 * May the fast path route this IPv4 header itself? Options, fragments and a
 * TTL about to expire are the stack's (it answers the last with ICMP).
 */
static __always_inline enum bpfnet_fastpath_event fp_routable(const struct iphdr *ip)
{
	if (ip->ihl != 5)
		return BPFNET_FP_IP_OPTIONS;
	if (bpf_ntohs(ip->frag_off) & IP_MF_AND_OFFSET)
		return BPFNET_FP_FRAGMENT;
	if (ip->ttl <= 1)
		return BPFNET_FP_TTL;
	return BPFNET_FP_HIT;
}

/*
 * The FIB's answer for routing IPv4 packet `ip`, with source `saddr` and
 * `sport`, destination `daddr` and `dport` (the packet's own, or what NAT
 * makes them), as the stack would,
 * had it entered on `ingress_ifindex`: HIT with *fib holding the egress interface
 * and MACs, or the event that sends it to the stack — forwarding off on the
 * ingress device (the fast path never forwards where the host would not), no
 * neighbour entry yet (the stack resolves it), or anything else: blackhole,
 * unreachable, not forwarded, unsupported L2, or too big for the egress MTU.
 * `check_len`: check the packet's IPv4 length against that MTU (XDP), or 0
 * to let the kernel check the skb itself (tc: GSO-aware).
 */
static __always_inline enum bpfnet_fastpath_event
fp_fib_route_between(void *ctx, const struct iphdr *ip, __be32 saddr, __be16 sport, __be32 daddr,
		     __be16 dport, __u32 ingress_ifindex, int check_len, struct bpf_fib_lookup *fib)
{
	fib->family = AF_INET;
	fib->tos = ip->tos;
	fib->l4_protocol = ip->protocol;
	fib->sport = sport;
	fib->dport = dport;
	fib->tot_len = check_len ? bpf_ntohs(ip->tot_len) : 0;
	fib->ipv4_src = saddr;
	fib->ipv4_dst = daddr;
	fib->ifindex = ingress_ifindex;
	switch (bpf_fib_lookup(ctx, fib, sizeof(*fib), 0)) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		return BPFNET_FP_HIT;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return BPFNET_FP_FWD_DISABLED;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return BPFNET_FP_NO_NEIGH;
	default:
		return BPFNET_FP_FIB;
	}
}

/* fp_fib_route_between from the packet's own source (to what DNAT makes its destination). */
static __always_inline enum bpfnet_fastpath_event
fp_fib_route_to(void *ctx, const struct iphdr *ip, __be16 sport, __be32 daddr, __be16 dport,
		__u32 ingress_ifindex, int check_len, struct bpf_fib_lookup *fib)
{
	return fp_fib_route_between(ctx, ip, ip->saddr, sport, daddr, dport, ingress_ifindex,
				    check_len, fib);
}

/* fp_fib_route_to for the packet's own destination. */
static __always_inline enum bpfnet_fastpath_event fp_fib_route(void *ctx, const struct iphdr *ip,
							       const struct parsed *p,
							       __u32 ingress_ifindex, int check_len,
							       struct bpf_fib_lookup *fib)
{
	return fp_fib_route_to(ctx, ip, p->sport, ip->daddr, p->dport, ingress_ifindex, check_len,
			       fib);
}

/*
 * Container -> a peer host's containers (cross-host fast path): may this
 * packet, allowed as outside traffic (row 7), leave straight through the
 * external interface the host would route it by, without the bridge, the
 * host's routing and netfilter? No NAT is involved (masquerade skips peer
 * subnets), so nothing needs conntrack to translate; what needs it is the
 * way back: the peer's replies are judged on arrival by the sending
 * network's icc (row 12), so a network with icc off and peerPolicy icc, whose
 * containers get replies only as conntrack replies (row 10), keeps its
 * cross-host flows in the stack (PEER_STATE). bpf_fib_lookup resolves the
 * route as the stack would for a packet entering on the network's bridge
 * (forwarding on the bridge honoured, policy routing included); it must
 * leave through an external interface (bn_ext_ifs), where the ext program
 * polices the way back. `check_len`: the IPv4 length to check against the
 * egress MTU (XDP), or 0 to let the kernel check the skb (tc: GSO-aware).
 * Nothing is written; on a hit *fib holds the egress interface and MACs
 * for port_peer_rewrite.
 */
static __always_inline enum bpfnet_fastpath_event
port_peer_route(void *ctx, const struct bpfnet_config *cfg, const struct pkt *pkt,
		const struct parsed *p, __u32 ingress_ifindex, int check_len,
		struct bpf_fib_lookup *fib)
{
	enum bpfnet_fastpath_event event;
	const struct bpfnet_network *net;
	const struct bpfnet_port *port;
	struct iphdr *ip;

	if (!(cfg->flags & BPFNET_CFG_FAST_PATH))
		return BPFNET_FP_DISABLED;
	if (!(cfg->flags & BPFNET_CFG_PEERS) || !p->ipv4 || !peer_lookup(p->daddr))
		return BPFNET_FP_VERDICT; /* the outside: the host routes and masquerades it */
	if (p->vlan_tags)
		return BPFNET_FP_VLAN;
	port = port_lookup(ingress_ifindex);
	net = network_get(port ? port->network : 0);
	if (!(cfg->flags & BPFNET_CFG_PEER_ALLOW) && !(net->flags & BPFNET_NET_ICC))
		return BPFNET_FP_PEER_STATE;
	/* Routed frames are addressed to the gateway, the bridge. */
	if (!mac_equal(p->dst_mac, net->bridge_mac))
		return BPFNET_FP_MAC;
	ip = pkt->data + sizeof(struct ethhdr);
	if ((void *)(ip + 1) > pkt->data_end)
		return BPFNET_FP_FIB; /* cannot happen after the parse; for the verifier */
	event = fp_routable(ip);
	if (event != BPFNET_FP_HIT)
		return event;

	event = fp_fib_route(ctx, ip, p, net->bridge_ifindex, check_len, fib);
	if (event != BPFNET_FP_HIT)
		return event;
	if (!bpf_map_lookup_elem(&BPFNET_MAP_EXT_IFS, &fib->ifindex))
		return BPFNET_FP_FIB;
	return BPFNET_FP_HIT;
}

/* The routed frame as the stack would send it: the FIB's MACs, TTL - 1. */
static __always_inline int port_peer_rewrite(const struct pkt *pkt,
					     const struct bpf_fib_lookup *fib)
{
	struct ethhdr *eth = pkt->data;
	struct iphdr *ip = pkt->data + sizeof(*eth);

	if ((void *)(ip + 1) > pkt->data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
	ipv4_decrease_ttl(ip);
	return 0;
}

#endif /* BPFNET_FASTPATH_H */
