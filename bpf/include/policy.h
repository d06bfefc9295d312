/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy.h — the verdict functions of the policy table (docs/policy.md), as
 * docs/verdicts.md states them (the Swift reference model mirrors this file
 * branch for branch; the differential test holds them together).
 *
 * Each function returns a reason; the entry point counts it and derives the
 * action (counters.h).
 *
 * BPF only.
 */
#ifndef BPFNET_POLICY_H
#define BPFNET_POLICY_H

#include "bpfnet_shared.h"
#include "ctx.h"
#include "maps.h"
#include "parse.h"

#ifndef AF_INET
#define AF_INET 2 /* bpf_fib_lookup's family (ext_peer, the ext fast path) */
#endif

static __always_inline int is_multicast_or_broadcast(__be32 addr)
{
	__u32 host = bpf_ntohl(addr);

	return (host >> 28) == 0xE || host == 0xFFFFFFFF;
}

static __always_inline int in_bridge_subnet(const struct bpfnet_config *cfg, __be32 addr)
{
	/* A zero netmask means the subnet is unknown, not "everything". */
	return cfg->bridge_netmask && (addr & cfg->bridge_netmask) == cfg->bridge_subnet;
}

static __always_inline int in_network_subnet(const struct bpfnet_network *net, __be32 addr)
{
	return net->netmask && (addr & net->netmask) == net->subnet;
}

/*
 * A container whose address lies outside its network's subnet (or with the
 * subnet unknown). Docker's containers never do, so the compiler sets the
 * flag only when the policy has one, and traffic to the outside pays no map
 * lookup. NULL when there is none at `addr`.
 */
static __always_inline const struct bpfnet_container *
container_outside_subnet(const struct bpfnet_config *cfg, __be32 addr)
{
	if (!(cfg->flags & BPFNET_CFG_OUTSIDE_CONTAINERS))
		return NULL;
	return bpf_map_lookup_elem(&BPFNET_MAP_CONTAINERS, &addr);
}

static __always_inline int link_rule_exists(__be32 saddr, __be32 daddr, __be16 port, __u8 proto,
					    __u8 dir)
{
	struct bpfnet_link_key key = {
		.saddr = saddr,
		.daddr = daddr,
		.port = port,
		.proto = proto,
		.dir = dir,
	};

	return bpf_map_lookup_elem(&BPFNET_MAP_LINKS, &key) != NULL;
}

/* An all-zero policy, used only if the config slot could not be read. */
static const struct bpfnet_config empty_config;

static __always_inline const struct bpfnet_config *config_or_empty(void)
{
	const struct bpfnet_config *cfg = config_get();

	return cfg ? cfg : &empty_config;
}

/*
 * Is a unicast destination MAC a container's? Frames to the bridge's own MAC
 * (everything a container sends to the host or the outside) skip the lookup.
 */
static __always_inline int is_container_mac(const struct bpfnet_network *net, const __u8 *dst_mac)
{
	struct bpfnet_mac_key mac = {};

	if ((dst_mac[0] & 1) || mac_equal_fast(dst_mac, net->bridge_mac))
		return 0;
	__builtin_memcpy(mac.mac, dst_mac, sizeof(mac.mac));
	return bpf_map_lookup_elem(&BPFNET_MAP_MACS, &mac) != NULL;
}

/*
 * An IPv6 source any container may use without owning it: the unspecified
 * address (duplicate address detection) and a link-local one (fe80::/10:
 * neighbour discovery; never routed, so it reaches no other network).
 */
static __always_inline int ipv6_link_local(const __u8 *addr)
{
	return addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80; /* fe80::/10 */
}

static __always_inline int ipv6_unbound_source(const __u8 *addr)
{
	const __u32 *words = (const __u32 *)addr;

	if (ipv6_link_local(addr))
		return 1;
	return (words[0] | words[1] | words[2] | words[3]) == 0;
}

static __always_inline int ipv6_equal(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a;
	const __u32 *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

#define ND_HOP_LIMIT		 255 /* RFC 4861: receivers take no other */
#define ICMPV6_ROUTER_SOLICIT	 133
#define ICMPV6_ROUTER_ADVERT	 134
#define ICMPV6_NEIGHBOUR_SOLICIT 135
#define ICMPV6_NEIGHBOUR_ADVERT	 136
#define ICMPV6_REDIRECT		 137
#define ICMPV6_NEIGHBOUR_MSG_LEN \
	24 /* solicitation or advertisement: type, code, checksum, flags, target */
#define ICMPV6_ROUTER_SOLICIT_LEN 8 /* type, code, checksum, reserved */
#define ND_OPT_SOURCE_LLA	  1
#define ND_OPT_TARGET_LLA	  2
#define ND_MAX_OPTIONS		  4    /* a host's ND carries one or two */
#define ND_MAX_OPTIONS_OFFSET	  1024 /* bounds every read for the verifier */

/*
 * The options of a router solicitation, neighbour solicitation or
 * advertisement, from `offset` to the end of the frame: a link-layer address
 * option (source or target, one 8-byte unit: an Ethernet address) must name
 * the port's MAC, as an ARP packet's sender MAC must. An option of length 0
 * (receivers discard the message, RFC 4861) or more options than are read
 * are dropped rather than passed unread. Returns 0 or DROP_SPOOFED.
 */
static __always_inline enum bpfnet_reason
nd_link_layer_options(const struct pkt *pkt, const struct bpfnet_port *port, __u32 offset)
{
	const __u8 *option;
	int i;

#pragma unroll
	for (i = 0; i < ND_MAX_OPTIONS; i++) {
		if (offset > ND_MAX_OPTIONS_OFFSET)
			return BPFNET_DROP_SPOOFED;
		option = pkt->data + offset;
		if ((void *)(option + 2) > pkt->data_end)
			return BPFNET_REASON_NONE; /* no more options */
		if (option[1] == 0)
			return BPFNET_DROP_SPOOFED;
		if ((option[0] == ND_OPT_SOURCE_LLA || option[0] == ND_OPT_TARGET_LLA) &&
		    option[1] == 1) {
			if ((void *)(option + 8) > pkt->data_end)
				return BPFNET_DROP_SPOOFED;
			if (!mac_equal_fast(option + 2, port->mac))
				return BPFNET_DROP_SPOOFED;
		}
		offset += (__u32)option[1] * 8;
	}
	if (offset > ND_MAX_OPTIONS_OFFSET)
		return BPFNET_DROP_SPOOFED;
	option = pkt->data + offset;
	return (void *)(option + 1) > pkt->data_end ? BPFNET_REASON_NONE : BPFNET_DROP_SPOOFED;
}

/*
 * Neighbour discovery is IPv6's ARP, and what a container may claim in it is
 * held as for ARP: a neighbour advertisement's target must be one of the
 * container's own addresses or a link-local one (its source address is
 * checked like any packet's), the link-layer addresses its solicitations and
 * advertisements carry must be its own MAC (nd_link_layer_options), and a
 * container is never a router: a router
 * advertisement (a rogue default route for every neighbour that listens) or
 * a redirect is dropped (RA guard, RFC 6105). Receivers take ND only with hop
 * limit 255, so nothing else is looked at; a hop-limit-255 packet whose
 * extension headers the walk cannot follow (ipv6_walk_to_l4) might be ND,
 * and is dropped. ND is never fragmented (RFC 6980; receivers drop it): a
 * first fragment of an ND message is dropped, so that no part of a claim
 * hides in a fragment this program does not read, and a non-first fragment
 * then has no datagram to complete. Returns 0 or DROP_SPOOFED.
 */
static __always_inline enum bpfnet_reason
port_nd_claim(const struct pkt *pkt, const struct bpfnet_port *port, const struct parsed *p)
{
	const struct bpfnet_container *owner;
	const __u8 *icmp, *target;
	enum ipv6_walk walk;
	int fragmented;
	__u32 offset;
	__u8 next;

	if (p->hop_limit6 != ND_HOP_LIMIT)
		return BPFNET_REASON_NONE;
	walk = ipv6_walk_to_l4(pkt, p, &next, &offset, &fragmented);
	if (walk == IPV6_WALK_FRAGMENT)
		return BPFNET_REASON_NONE;
	if (walk == IPV6_WALK_UNREADABLE)
		return BPFNET_DROP_SPOOFED;
	if (next != IPPROTO_ICMPV6)
		return BPFNET_REASON_NONE;
	if (offset > IPV6_MAX_L4_OFFSET)
		return BPFNET_DROP_SPOOFED;
	icmp = pkt->data + offset;
	if ((void *)(icmp + 1) > pkt->data_end)
		return BPFNET_DROP_SPOOFED;
	if (fragmented && icmp[0] >= ICMPV6_ROUTER_SOLICIT && icmp[0] <= ICMPV6_REDIRECT)
		return BPFNET_DROP_SPOOFED;
	if (icmp[0] == ICMPV6_ROUTER_ADVERT || icmp[0] == ICMPV6_REDIRECT)
		return BPFNET_DROP_SPOOFED;
	/* A solicitation cut short is discarded by its receivers. */
	if (icmp[0] == ICMPV6_ROUTER_SOLICIT)
		return nd_link_layer_options(pkt, port, offset + ICMPV6_ROUTER_SOLICIT_LEN);
	if (icmp[0] == ICMPV6_NEIGHBOUR_SOLICIT)
		return nd_link_layer_options(pkt, port, offset + ICMPV6_NEIGHBOUR_MSG_LEN);
	if (icmp[0] != ICMPV6_NEIGHBOUR_ADVERT)
		return BPFNET_REASON_NONE;
	if ((void *)(icmp + ICMPV6_NEIGHBOUR_MSG_LEN) > pkt->data_end)
		return BPFNET_DROP_SPOOFED;
	target = icmp + 8;
	if (!ipv6_link_local(target)) {
		owner = container6_lookup(target);
		if (!owner || !mac_equal_fast(owner->mac, port->mac))
			return BPFNET_DROP_SPOOFED;
	}
	return nd_link_layer_options(pkt, port, offset + ICMPV6_NEIGHBOUR_MSG_LEN);
}

/*
 * Does the frame come from the container its port belongs to? Every frame's
 * source MAC; an IPv4 packet's source; an IPv6 packet's source, unless
 * unspecified or link-local, and what its neighbour discovery claims
 * (port_nd_claim); an ARP packet's sender MAC and sender address (0.0.0.0 for
 * an RFC 5227 probe). Returns 0 or DROP_SPOOFED.
 */
static __always_inline enum bpfnet_reason port_identity(const struct pkt *pkt,
							const struct bpfnet_port *port,
							enum parse_kind kind,
							const struct parsed *p)
{
	const struct bpfnet_container *owner;

	if (!mac_equal_fast(p->src_mac, port->mac))
		return BPFNET_DROP_SPOOFED;
	if (kind == PARSE_IPV4 && p->saddr != port->addr)
		return BPFNET_DROP_SPOOFED;
	if (kind == PARSE_IPV6 && !ipv6_unbound_source(p->saddr6)) {
		/* A global source must be one of the container's (each endpoint
		 * has its own MAC, so the MAC names the port's). */
		owner = container6_lookup(p->saddr6);
		if (!owner || !mac_equal_fast(owner->mac, port->mac))
			return BPFNET_DROP_SPOOFED;
	}
	if (kind == PARSE_IPV6 && port_nd_claim(pkt, port, p) != BPFNET_REASON_NONE)
		return BPFNET_DROP_SPOOFED;
	if (kind == PARSE_ARP &&
	    ((p->saddr != port->addr && p->saddr != 0) || !mac_equal_fast(p->arp_sha, port->mac)))
		return BPFNET_DROP_SPOOFED;
	return BPFNET_REASON_NONE;
}

/*
 * Where an IPv4 packet from network `net_id` goes, by its IP header and, for
 * a frame sent to a container's MAC, by L2: BPFNET_REASON_NONE when it is
 * judged between containers of the network (icc and links), else its
 * verdict. A frame to a container's MAC goes port to port on the bridge
 * whatever its IP header says (a poisoned neighbour entry), so it is judged
 * between containers. docs/verdicts.md, "Port program".
 */
static __always_inline enum bpfnet_reason port_destination(const struct bpfnet_config *cfg,
							   const struct bpfnet_network *net,
							   __u16 net_id, const struct parsed *p)
{
	const struct bpfnet_container *container;
	const struct bpfnet_subnet *other;

	if (p->daddr == net->bridge_addr)
		return is_container_mac(net, p->dst_mac) ? BPFNET_REASON_NONE : BPFNET_PASS_HOST;
	if (in_network_subnet(net, p->daddr) || is_multicast_or_broadcast(p->daddr))
		return BPFNET_REASON_NONE;
	container = container_outside_subnet(cfg, p->daddr);
	if (container)
		return container->network == net_id ? BPFNET_REASON_NONE : BPFNET_DROP_NETWORK;
	if (cfg->flags & BPFNET_CFG_NETWORKS) {
		/* Another Docker network's subnet: isolated, but its gateway is
		 * one of the host's addresses. One lookup, however many networks. */
		other = subnet_lookup(p->daddr);
		if (other && p->daddr != other->bridge_addr)
			return BPFNET_DROP_NETWORK;
		if (other)
			return is_container_mac(net, p->dst_mac) ? BPFNET_REASON_NONE :
								   BPFNET_PASS_HOST;
	}
	if (is_container_mac(net, p->dst_mac))
		return BPFNET_REASON_NONE;
	/* An internal network reaches nothing outside its subnet but the host's
	 * bridge addresses (Docker: no default route, FORWARD drops the rest). */
	if (net->flags & BPFNET_NET_INTERNAL)
		return BPFNET_DROP_INTERNAL;
	return BPFNET_PASS_OUTSIDE;
}

/*
 * Where an IPv6 packet from network `net_id` goes, as port_destination does
 * for IPv4 (docs/verdicts.md, "Port program"): BPFNET_REASON_NONE when it is
 * judged between containers, else its verdict. Neighbour discovery and MLD
 * (multicast destinations) pass whatever icc says; a unicast destination in
 * a multicast frame is flooded to every port and accepted there, so it is
 * between containers. Networks' IPv6 subnets are one LPM lookup
 * (bn_subnets6, the port's own network included).
 */
static __always_inline enum bpfnet_reason port_destination6(const struct bpfnet_config *cfg,
							    const struct bpfnet_network *net,
							    __u16 net_id, const struct parsed *p)
{
	const struct bpfnet_subnet6 *dst_net;
	const __u8 *d = p->daddr6;

	if (p->dst_mac[0] & 1)
		return p->daddr6_multicast ? BPFNET_PASS_IPV6 : BPFNET_REASON_NONE;
	if (cfg->flags & BPFNET_CFG_IPV6) {
		dst_net = subnet6_lookup(d);
		if (dst_net) {
			/* A gateway is a host address, not isolated. */
			if (ipv6_equal(d, dst_net->bridge_addr))
				return is_container_mac(net, p->dst_mac) ? BPFNET_REASON_NONE :
									   BPFNET_PASS_HOST;
			return dst_net->network == net_id ? BPFNET_REASON_NONE :
							    BPFNET_DROP_NETWORK;
		}
	}
	if (is_container_mac(net, p->dst_mac))
		return BPFNET_REASON_NONE;
	/* Link-local: the host's own (the bridge's), never routed on. */
	if (ipv6_link_local(d))
		return BPFNET_PASS_IPV6;
	if (net->flags & BPFNET_NET_INTERNAL)
		return BPFNET_DROP_INTERNAL;
	return BPFNET_PASS_IPV6; /* the host or the outside, routed without NAT */
}

/*
 * The verdict for a parsed IPv4/IPv6 packet (docs/verdicts.md, "Port
 * program") from a port of network `net_id`; `known`: the port's container is
 * known (and the frame passed its identity check).
 */
static __always_inline enum bpfnet_reason port_policy_parsed(const struct bpfnet_config *cfg,
							     enum parse_kind kind,
							     const struct parsed *p, __u16 net_id,
							     int known)
{
	const struct bpfnet_network *net = network_get(net_id);
	int icc = net->flags & BPFNET_NET_ICC;
	enum bpfnet_reason reason;

	if (kind == PARSE_IPV6) {
		reason = port_destination6(cfg, net, net_id, p);
		if (reason != BPFNET_REASON_NONE)
			return reason;
		/* Between containers: icc alone (Docker's links are IPv4 rules). */
		if (icc)
			return BPFNET_PASS_ICC;
		return known ? BPFNET_DROP_ICC : BPFNET_DROP_UNKNOWN_PORT;
	}

	reason = port_destination(cfg, net, net_id, p);
	if (reason != BPFNET_REASON_NONE)
		return reason;
	if (icc)
		return BPFNET_PASS_ICC;
	/* No container known on this port: no link can be its own. */
	if (!known)
		return BPFNET_DROP_UNKNOWN_PORT;

	if (p->nonfirst_fragment) {
		/* No ports here: admit fragments only between a linked pair. */
		if (link_rule_exists(p->saddr, p->daddr, 0, p->proto, BPFNET_LINK_PAIR))
			return BPFNET_PASS_LINK_FRAGMENT;
		return BPFNET_DROP_ICC;
	}
	if (p->has_ports) {
		if (link_rule_exists(p->saddr, p->daddr, p->dport, p->proto, BPFNET_LINK_FORWARD))
			return BPFNET_PASS_LINK;
		/* Docker's reverse rule is stateless: any packet from an exposed
		 * source port of the child to its parent passes (row 5). */
		if (link_rule_exists(p->saddr, p->daddr, p->sport, p->proto, BPFNET_LINK_REVERSE))
			return BPFNET_PASS_LINK_REVERSE;
	}
	return BPFNET_DROP_ICC;
}

/*
 * Rows 1-7: every packet a container sends, seen on its bridge port
 * `ifindex`. `p` (zeroed by the caller) receives the parsed headers and `cfg`
 * the policy, for the fast path that follows an allowed verdict.
 */
static __always_inline enum bpfnet_reason port_policy(const struct pkt *pkt, struct parsed *p,
						      const struct bpfnet_config **cfg,
						      __u32 ifindex)
{
	const struct bpfnet_port *port;
	enum bpfnet_reason reason;
	enum parse_kind kind;
	int known;

	*cfg = config_or_empty();
	kind = parse_frame(pkt, p);
	if (kind == PARSE_MALFORMED)
		return BPFNET_DROP_MALFORMED;
	if (kind == PARSE_ENCAP)
		return BPFNET_DROP_ENCAP;
	port = port_lookup(ifindex);
	known = port && (port->flags & BPFNET_PORT_KNOWN);
	if (known) {
		reason = port_identity(pkt, port, kind, p);
		if (reason != BPFNET_REASON_NONE)
			return reason;
	}
	if (kind == PARSE_OTHER || kind == PARSE_ARP)
		return BPFNET_PASS_NON_IP;
	/* A port without an entry is the default bridge's (network 0). */
	return port_policy_parsed(*cfg, kind, p, port ? port->network : 0, known);
}

static __always_inline int source_allowed(__u32 ifindex, __be32 saddr)
{
	struct bpfnet_allow_key key = {
		.prefixlen = BPFNET_ALLOW_PREFIX_BASE + 32,
		.ifindex = ifindex,
		.addr = saddr,
	};
	struct bpfnet_ext_if *ext;

	ext = bpf_map_lookup_elem(&BPFNET_MAP_EXT_IFS, &ifindex);
	if (!ext || !(ext->flags & BPFNET_EXT_ALLOWLIST))
		return 1; /* no list on this interface: everyone */
	return bpf_map_lookup_elem(&BPFNET_MAP_ALLOW_SRC, &key) != NULL;
}

/* Is (host address, port, proto) a key of bn_published? 0 is Docker's 0.0.0.0. */
static __always_inline int published_key_exists(__be32 host_addr, __be16 dport, __u8 proto)
{
	struct bpfnet_published_key key = {
		.host_addr = host_addr,
		.host_port = dport,
		.proto = proto,
	};

	return bpf_map_lookup_elem(&BPFNET_MAP_PUBLISHED, &key) != NULL;
}

/* Published on this host address, or on every address (the wildcard binding). */
static __always_inline int is_published(__be32 daddr, __be16 dport, __u8 proto)
{
	return published_key_exists(daddr, dport, proto) || published_key_exists(0, dport, proto);
}

/*
 * Rows 8-11 before the conntrack check: the provisional verdict for a packet
 * arriving on an external interface. `p` is an IPv4 packet that is not a
 * non-first fragment.
 */
/*
 * Is `daddr` a container address (of any network: in a network's subnet but
 * not its gateway, or a known container outside its subnet)? *net_id then
 * receives the network.
 */
static __always_inline int to_container_network(const struct bpfnet_config *cfg, __be32 daddr,
						__u32 *net_id)
{
	const struct bpfnet_container *container;
	const struct bpfnet_subnet *other;

	if (daddr == cfg->bridge_addr)
		return 0;
	if (in_bridge_subnet(cfg, daddr)) {
		*net_id = 0;
		return 1;
	}
	container = container_outside_subnet(cfg, daddr);
	if (container) {
		*net_id = container->network;
		return 1;
	}
	if (!(cfg->flags & BPFNET_CFG_NETWORKS))
		return 0;
	other = subnet_lookup(daddr);
	if (!other || daddr == other->bridge_addr)
		return 0;
	*net_id = other->network;
	return 1;
}

/*
 * Rows 12-13: a packet from a peer host's container subnet (bn_peers, one
 * LPM lookup) to a local container. It must arrive the way this host routes
 * towards the peer's own address: bpf_fib_lookup from the ingress interface
 * (forwarding lookup, as the packet would be routed) must leave through the
 * ingress interface again, with the frame's source MAC as its neighbour (the
 * peer itself on a shared link, the router towards it otherwise). Anything it
 * cannot confirm (no route, forwarding off on the ingress, no neighbour entry,
 * another interface or MAC) is dropped as peer-spoofed: an outside host
 * cannot claim a peer's subnet. A confirmed packet is inter-container
 * traffic: the destination network's icc (row 12; peerPolicy allow skips it),
 * never into an internal network. Asked only once the destination is known
 * to be in container network net_id, so traffic to published ports and the
 * host never pays the lookup. BPFNET_REASON_NONE when the source is no
 * peer's. docs/verdicts.md, "Ext program".
 */
static __always_inline enum bpfnet_reason
ext_peer(struct xdp_md *xdp, const struct bpfnet_config *cfg, const struct parsed *p, __u32 net_id)
{
	struct bpf_fib_lookup fib = {};
	const struct bpfnet_peer *peer;
	__u32 net_flags;

	if (!(cfg->flags & BPFNET_CFG_PEERS))
		return BPFNET_REASON_NONE;
	peer = peer_lookup(p->saddr);
	if (!peer)
		return BPFNET_REASON_NONE;
	fib.family = AF_INET;
	fib.ipv4_dst = peer->addr;
	fib.ifindex = xdp->ingress_ifindex;
	if (bpf_fib_lookup(xdp, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS ||
	    fib.ifindex != xdp->ingress_ifindex || !mac_equal(fib.dmac, p->src_mac))
		return BPFNET_DROP_PEER_SPOOFED;
	net_flags = network_get(net_id)->flags;
	if (net_flags & BPFNET_NET_INTERNAL)
		return BPFNET_DROP_INTERNAL;
	if ((cfg->flags & BPFNET_CFG_PEER_ALLOW) || (net_flags & BPFNET_NET_ICC))
		return BPFNET_PASS_PEER;
	return BPFNET_DROP_ICC;
}

static __always_inline enum bpfnet_reason
ext_provisional(struct xdp_md *xdp, const struct bpfnet_config *cfg, const struct parsed *p)
{
	__u32 ifindex = xdp->ingress_ifindex;
	enum bpfnet_reason reason;
	__u32 net_id = 0;

	if (to_container_network(cfg, p->daddr, &net_id)) {
		/* From a peer host's containers (rows 12-13), or not. */
		reason = ext_peer(xdp, cfg, p, net_id);
		if (reason != BPFNET_REASON_NONE)
			return reason;
		/* Routed straight at a container address, no DNAT (row 9). */
		if (!(cfg->flags & BPFNET_CFG_FORWARD_ACCEPT))
			return BPFNET_DROP_FORWARD;
		if (network_get(net_id)->flags & BPFNET_NET_INTERNAL)
			return BPFNET_DROP_INTERNAL;
		return source_allowed(ifindex, p->saddr) ? BPFNET_PASS_FORWARD : BPFNET_DROP_SOURCE;
	}
	/* Matched before DNAT on host address and host port (row 8). A wildcard
	 * binding is enforced for every unicast non-container destination:
	 * fail-closed, no tracking of the host's own addresses needed. Multicast
	 * and broadcast are never DNATed (Docker's DNAT wants a local address),
	 * so mDNS and the like stay the host's business (row 11). */
	if (p->has_ports && !is_multicast_or_broadcast(p->daddr) &&
	    is_published(p->daddr, p->dport, p->proto))
		return source_allowed(ifindex, p->saddr) ? BPFNET_PASS_PUBLISHED :
							   BPFNET_DROP_SOURCE;
	return BPFNET_PASS_LOCAL;
}

#endif /* BPFNET_POLICY_H */
