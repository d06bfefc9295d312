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

#define IP_MF_AND_OFFSET 0x3FFF /* MF flag + fragment offset, host order */

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

#endif /* BPFNET_FASTPATH_H */
