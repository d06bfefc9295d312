// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ext.bpf.c — the ext program: XDP on every external interface, rows 8-11 of
 * the policy table. It sees packets before DNAT, so a published port is
 * matched on the host address and host port. Replies to connections opened
 * from this host's side (containers, masqueraded or not) are recognised with
 * the kernel's own conntrack table (bpf_xdp_ct_lookup, kernel >= 6.0) and are
 * never dropped, nor are ICMP errors about them (path MTU discovery);
 * conntrack is consulted only when a packet would be dropped. IPv6 to a
 * container (dual stack) is judged like IPv4, without NAT; on an interface
 * with an allow-list IPv6 to a port published on all addresses (docker-proxy
 * serves [::]) needs a listed source.
 *
 * Fast path (BPFNET_CFG_FAST_PATH, fastpath.h): a UDP datagram the forward
 * policy admits straight to a container (reason forward-accept) is routed
 * here instead of by the host: bpf_fib_lookup (which honours ip_forward on
 * the ingress device) must resolve it to the bridge with a neighbour that is
 * the container's MAC; MACs are rewritten, TTL decremented, and the frame is
 * redirected to the container's port through this object's bn_fp_tx DEVMAP
 * (fastpath.h: NAPI arranged, and the device still there). Only
 * datagrams of a flow conntrack already tracks as opened from outside, without
 * NAT, are taken: the container's replies then still match that entry in the
 * host's stack, so masquerade never rewrites them. TCP stays with the stack:
 * conntrack tracks its windows from both directions, and a TCP flow whose
 * inbound half bypassed it would see its replies turned invalid and, once the
 * entry expired, masqueraded.
 * A peer host's container traffic (reason peer, rows 12-13) takes the same
 * way in, TCP and every other protocol included, and without asking
 * conntrack: it is judged without state in both directions (row 12 here,
 * row 7 on the way out, where masquerade skips peer subnets), so no entry is
 * needed to keep it untranslated (docs/verdicts.md, "Cross-host fast path").
 *
 * eBPF NAT (--nat ebpf, nat.h): a packet row 8 passed to a published port is
 * translated here and handed to its container, around the host's stack, and
 * ICMP errors about such connections follow it; what the NAT does not take
 * goes to the stack, where netfilter's DNAT stays.
 *
 * License: GPL-2.0-only OR BSD-2-Clause (conntrack kfuncs need GPL-compatible).
 */
#include "ctx.h"
#include "counters.h"
#include "fastpath.h"
#include "nat.h"
#include "policy.h"

#define BPF_F_CURRENT_NETNS (-1)
#define IP_CT_DIR_ORIGINAL  0
#define IP_CT_DIR_REPLY	    1
#define IPS_SRC_NAT	    (1 << 4) /* enum ip_conntrack_status: a translation is set up */
#define IPS_DST_NAT	    (1 << 5)

/* The kernel's struct bpf_ct_opts in its original 12-byte form (NF_BPF_CT_OPTS_OLD_SZ). */
struct bpf_ct_opts___local {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir; /* out: direction of the tuple that matched */
	__u8 reserved[2];
};

/*
 * Only `status` is read (CO-RE relocated against the kernel's BTF); otherwise
 * the pointer is passed back to the kernel. It must be a struct, not a
 * forward declaration: libbpf matches kfunc prototypes by kind, and a FWD
 * never matches the kernel's STRUCT.
 */
struct nf_conn {
	unsigned long status;
} __attribute__((preserve_access_index));

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *tuple,
					 __u32 tuple__sz, struct bpf_ct_opts___local *opts,
					 __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

/*
 * The direction the tuple has in its conntrack entry, or -1 without one;
 * *nat: the entry translates.
 */
static __always_inline int conntrack_lookup(struct xdp_md *xdp, __be32 saddr, __be32 daddr,
					    __be16 sport, __be16 dport, __u8 proto, int *nat)
{
	struct bpf_ct_opts___local opts = {
		.netns_id = BPF_F_CURRENT_NETNS,
		.l4proto = proto,
	};
	struct bpf_sock_tuple tuple = {};
	struct nf_conn *ct;
	int dir;

	*nat = 0;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return -1; /* the conntrack kfuncs only take TCP and UDP */
	tuple.ipv4.saddr = saddr;
	tuple.ipv4.daddr = daddr;
	tuple.ipv4.sport = sport;
	tuple.ipv4.dport = dport;

	ct = bpf_xdp_ct_lookup(xdp, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	if (!ct)
		return -1;
	dir = opts.dir;
	*nat = (ct->status & (IPS_SRC_NAT | IPS_DST_NAT)) != 0;
	bpf_ct_release(ct);
	return dir;
}

/* The direction this packet has in its conntrack entry, or -1 without one. */
static __always_inline int conntrack_direction(struct xdp_md *xdp, const struct parsed *p, int *nat)
{
	return conntrack_lookup(xdp, p->saddr, p->daddr, p->sport, p->dport, p->proto, nat);
}

/* Row 10: is this packet the reply direction of a tracked connection? */
static __always_inline int is_conntrack_reply(struct xdp_md *xdp, const struct parsed *p)
{
	int nat;

	return conntrack_direction(xdp, p, &nat) == IP_CT_DIR_REPLY;
}

/*
 * Row 10 for ICMP errors: destination unreachable (fragmentation needed:
 * path MTU discovery), time exceeded or parameter problem about a TCP/UDP
 * datagram this side sent, on a connection it opened, sent back to that
 * datagram's source: the reversed inner tuple is the reply direction of a
 * tracked connection, or a datagram to a peer host's containers (stateless:
 * see below). The inner header must be a plain 20-byte one; anything the
 * program cannot read whole is judged like any other packet.
 */
static __always_inline int is_related_icmp_error(struct xdp_md *xdp,
						 const struct bpfnet_config *cfg,
						 const struct pkt *pkt, const struct parsed *p)
{
	const struct icmp_error *error;
	__u32 offset = p->l4_offset;
	int nat;

	if (p->proto != IPPROTO_ICMP || p->nonfirst_fragment || offset > ICMP_ERROR_MAX_OFFSET)
		return 0;
	error = pkt->data + offset;
	if ((void *)(error + 1) > pkt->data_end || offset + sizeof(*error) > p->ip_end)
		return 0;
	if (error->type != ICMP_DEST_UNREACH && error->type != ICMP_TIME_EXCEEDED &&
	    error->type != ICMP_PARAMETERPROB)
		return 0;
	if (error->inner.version != 4 || error->inner.ihl != 5 ||
	    (error->inner.protocol != IPPROTO_TCP && error->inner.protocol != IPPROTO_UDP) ||
	    error->inner.saddr != p->daddr)
		return 0;
	/* About a datagram sent to a peer host's containers: that flow may
	 * have left by the cross-host fast path, which conntrack never sees,
	 * so the error needs no state (the receiving stack still checks it
	 * against its socket, e.g. TCP's sequence check, RFC 5927). */
	if ((cfg->flags & BPFNET_CFG_PEERS) && peer_lookup(error->inner.daddr)) {
		/* Never into an internal network: its containers reach no peer. */
		__u32 net_id = 0;

		return to_container_network(cfg, p->daddr, &net_id) &&
		       !(network_get(net_id)->flags & BPFNET_NET_INTERNAL);
	}
	return conntrack_lookup(xdp, error->inner.daddr, error->inner.saddr, error->inner_dport,
				error->inner_sport, error->inner.protocol, &nat) == IP_CT_DIR_REPLY;
}

/* Is the IPv6 source in `ifindex`'s allow-list (bn_allow_src6)? */
static __always_inline int source6_allowed(__u32 ifindex, const __u8 *saddr6)
{
	struct bpfnet_allow6_key key = {
		.prefixlen = BPFNET_ALLOW_PREFIX_BASE + 128,
		.ifindex = ifindex,
	};

	__builtin_memcpy(key.addr, saddr6, sizeof(key.addr));
	return bpf_map_lookup_elem(&BPFNET_MAP_ALLOW_SRC6, &key) != NULL;
}

static __always_inline int has_allow_list(__u32 ifindex)
{
	const struct bpfnet_ext_if *ext = bpf_map_lookup_elem(&BPFNET_MAP_EXT_IFS, &ifindex);

	return ext && (ext->flags & BPFNET_EXT_ALLOWLIST);
}

/* The direction an IPv6 TCP/UDP tuple has in its conntrack entry, or -1. */
static __always_inline int conntrack_lookup6(struct xdp_md *xdp, const __u8 *saddr,
					     const __u8 *daddr, __be16 sport, __be16 dport,
					     __u8 proto)
{
	struct bpf_ct_opts___local opts = {
		.netns_id = BPF_F_CURRENT_NETNS,
		.l4proto = proto,
	};
	struct bpf_sock_tuple tuple = {};
	struct nf_conn *ct;
	int dir;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return -1;
	__builtin_memcpy(tuple.ipv6.saddr, saddr, 16);
	__builtin_memcpy(tuple.ipv6.daddr, daddr, 16);
	tuple.ipv6.sport = sport;
	tuple.ipv6.dport = dport;
	ct = bpf_xdp_ct_lookup(xdp, &tuple, sizeof(tuple.ipv6), &opts, sizeof(opts));
	if (!ct)
		return -1;
	dir = opts.dir;
	bpf_ct_release(ct);
	return dir;
}

/* An ICMPv6 error (RFC 4443) with the start of the datagram it is about. */
struct icmp6_error {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be32 unused; /* or the MTU of "packet too big", the pointer of "parameter problem" */
	struct ipv6hdr inner;
	__be16 inner_sport;
	__be16 inner_dport;
} __attribute__((packed));

#define ICMPV6_ERROR_MAX 4 /* 1 unreachable, 2 packet too big, 3 time exceeded, 4 parameter */

/*
 * Row 10 for IPv6: the reply direction of a TCP/UDP connection conntrack
 * tracks, or an ICMPv6 error (packet too big: path MTU discovery, which IPv6
 * routers never fragment around) about a TCP/UDP datagram sent on such a
 * connection, back to its source; the quoted header must be followed by the
 * ports directly.
 */
static __always_inline int is_reply6(struct xdp_md *xdp, const struct pkt *pkt,
				     const struct parsed *p, __u8 next, __u32 offset)
{
	const struct icmp6_error *error;
	const __be16 *ports;

	if (offset > IPV6_MAX_L4_OFFSET)
		return 0;
	if (next == IPPROTO_TCP || next == IPPROTO_UDP) {
		ports = pkt->data + offset;
		if ((void *)(ports + 2) > pkt->data_end)
			return 0;
		return conntrack_lookup6(xdp, p->saddr6, p->daddr6, ports[0], ports[1], next) ==
		       IP_CT_DIR_REPLY;
	}
	if (next != IPPROTO_ICMPV6)
		return 0;
	error = pkt->data + offset;
	if ((void *)(error + 1) > pkt->data_end)
		return 0;
	if (error->type < 1 || error->type > ICMPV6_ERROR_MAX ||
	    (error->inner.nexthdr != IPPROTO_TCP && error->inner.nexthdr != IPPROTO_UDP) ||
	    !ipv6_equal((const __u8 *)&error->inner.saddr, p->daddr6))
		return 0;
	return conntrack_lookup6(xdp, (const __u8 *)&error->inner.daddr,
				 (const __u8 *)&error->inner.saddr, error->inner_dport,
				 error->inner_sport, error->inner.nexthdr) == IP_CT_DIR_REPLY;
}

/*
 * IPv6 on an external interface (docs/verdicts.md, "Ext program").
 * To a container's address (a network's IPv6 subnet, not its gateway; dual
 * stack routes it without NAT): the forward policy, internal networks and the
 * allow-list's IPv6 part decide as for IPv4 (row 9), and a drop is taken back
 * for the reply direction of a tracked connection or an ICMPv6 error about
 * one (row 10). Otherwise docker-proxy listens on [::]:HOSTPORT for every
 * published port bound to all addresses, so on an interface with an
 * allow-list IPv6 TCP/UDP to such a port is admitted only from a source in
 * the list's IPv6 part (`source` otherwise). A packet whose extension headers
 * cannot be walked is refused unless its source is listed (fail closed), a
 * non-first fragment is judged by its first. Everything else (ICMPv6 and
 * neighbour discovery, other ports, interfaces without a list) is the host's.
 */
static __always_inline enum bpfnet_reason ext_ipv6(struct xdp_md *xdp,
						   const struct bpfnet_config *cfg,
						   const struct pkt *pkt, const struct parsed *p)
{
	__u32 ifindex = xdp->ingress_ifindex;
	const struct bpfnet_subnet6 *dst_net = NULL;
	int listed = has_allow_list(ifindex);
	enum bpfnet_reason reason;
	enum ipv6_walk walk;
	const __be16 *ports;
	__u32 offset;
	__u8 next;

	if (cfg->flags & BPFNET_CFG_IPV6) {
		dst_net = subnet6_lookup(p->daddr6);
		if (dst_net && ipv6_equal(p->daddr6, dst_net->bridge_addr))
			dst_net = NULL; /* the gateway: a host address */
	}
	if (!dst_net && !listed)
		return BPFNET_PASS_IPV6;
	walk = ipv6_walk_to_l4(pkt, p, &next, &offset, NULL);
	if (walk == IPV6_WALK_FRAGMENT)
		return BPFNET_PASS_FRAGMENT;
	if (dst_net) {
		/* Routed straight at a container (row 9). */
		if (!(cfg->flags & BPFNET_CFG_FORWARD_ACCEPT))
			reason = BPFNET_DROP_FORWARD;
		else if (network_get(dst_net->network)->flags & BPFNET_NET_INTERNAL)
			reason = BPFNET_DROP_INTERNAL;
		else if (listed && !source6_allowed(ifindex, p->saddr6))
			reason = BPFNET_DROP_SOURCE;
		else
			return BPFNET_PASS_FORWARD;
		if (walk == IPV6_WALK_L4 && is_reply6(xdp, pkt, p, next, offset))
			return next == IPPROTO_ICMPV6 ? BPFNET_PASS_RELATED : BPFNET_PASS_REPLY;
		return reason;
	}
	if (walk == IPV6_WALK_UNREADABLE)
		return source6_allowed(ifindex, p->saddr6) ? BPFNET_PASS_IPV6 : BPFNET_DROP_SOURCE;
	if (next != IPPROTO_TCP && next != IPPROTO_UDP)
		return BPFNET_PASS_IPV6;
	ports = pkt->data + offset;
	if (offset > IPV6_MAX_L4_OFFSET || (void *)(ports + 2) > pkt->data_end)
		return source6_allowed(ifindex, p->saddr6) ? BPFNET_PASS_IPV6 : BPFNET_DROP_SOURCE;
	if (!published_key_exists(0, ports[1], next)) /* [::] serves only the wildcard bindings */
		return BPFNET_PASS_IPV6;
	return source6_allowed(ifindex, p->saddr6) ? BPFNET_PASS_PUBLISHED : BPFNET_DROP_SOURCE;
}

static __always_inline enum bpfnet_reason ext_policy(struct xdp_md *xdp, const struct pkt *pkt,
						     struct parsed *p,
						     const struct bpfnet_config **cfgp)
{
	const struct bpfnet_config *cfg = config_or_empty();
	enum parse_kind kind;
	enum bpfnet_reason reason;

	*cfgp = cfg;
	kind = parse_frame(pkt, p);
	if (kind == PARSE_MALFORMED)
		return BPFNET_DROP_MALFORMED;
	if (kind == PARSE_ENCAP)
		return BPFNET_DROP_ENCAP;
	if (kind == PARSE_OTHER || kind == PARSE_ARP)
		return BPFNET_PASS_NON_IP;
	if (kind == PARSE_IPV6)
		return ext_ipv6(xdp, cfg, pkt, p);
	if (p->nonfirst_fragment) {
		/* Conntrack's defrag reassembles before routing or local delivery,
		 * and a datagram whose first fragment was dropped never completes. */
		return BPFNET_PASS_FRAGMENT;
	}

	reason = ext_provisional(xdp, cfg, p);
	/* A claim on a peer's subnet from elsewhere is never a reply. */
	if (reason == BPFNET_DROP_PEER_SPOOFED)
		return reason;
	if (reason >= BPFNET_REASON_DROP_FIRST && p->has_ports && is_conntrack_reply(xdp, p))
		return BPFNET_PASS_REPLY;
	if (reason >= BPFNET_REASON_DROP_FIRST && is_related_icmp_error(xdp, cfg, pkt, p))
		return BPFNET_PASS_RELATED;
	return reason;
}

/*
 * Routes an allowed datagram to a container without the host's stack; on a
 * hit the frame is rewritten and *port is the container's host-side veth.
 * Every check comes before the first write, so a fallback leaves the frame
 * exactly as it arrived.
 */
static __always_inline enum bpfnet_fastpath_event
ext_fast_path(struct xdp_md *xdp, const struct bpfnet_config *cfg, const struct parsed *p,
	      enum bpfnet_reason reason, __u32 *port)
{
	void *data = (void *)(long)xdp->data;
	void *data_end = (void *)(long)xdp->data_end;
	struct bpf_fib_lookup fib = {};
	enum bpfnet_fastpath_event event;
	const struct bpfnet_container *dst;
	const struct bpfnet_fp_if *ingress;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	int nat;

	if (!(cfg->flags & BPFNET_CFG_FAST_PATH))
		return BPFNET_FP_DISABLED;
	/* Published (DNAT), local, reply, ... stay with the stack. */
	if (reason != BPFNET_PASS_FORWARD && reason != BPFNET_PASS_PEER)
		return BPFNET_FP_VERDICT;
	if (p->vlan_tags)
		return BPFNET_FP_VLAN;
	ip = data + sizeof(*eth);
	if ((void *)(ip + 1) > data_end)
		return BPFNET_FP_FIB; /* cannot happen after the parse; for the verifier */
	event = fp_routable(ip);
	if (event != BPFNET_FP_HIT)
		return event;
	/* A peer's traffic is judged without state both ways (rows 7 and
	 * 12): any protocol, TCP included. Forward-accept is only for UDP. */
	if (reason == BPFNET_PASS_FORWARD && ip->protocol != IPPROTO_UDP)
		return BPFNET_FP_PROTOCOL;
	/* Routed frames are addressed to the ingress interface; anything else
	 * (another host's unicast seen in promiscuous mode, multicast) is not
	 * ours to forward. Without an entry, nothing was arranged here. */
	ingress = fp_if(xdp->ingress_ifindex);
	if (!ingress)
		return BPFNET_FP_PARTIAL_CSUM;
	if (!mac_equal(eth->h_dest, ingress->mac))
		return BPFNET_FP_MAC;
	dst = bpf_map_lookup_elem(&BPFNET_MAP_CONTAINERS, &p->daddr);
	if (!dst || !dst->port_ifindex)
		return BPFNET_FP_UNKNOWN_DEST;
	if (!(ingress->flags & BPFNET_FP_IF_FULL_CSUM))
		return BPFNET_FP_PARTIAL_CSUM; /* xdp_source_checks, with the entry at hand */
	/* In bn_fp_tx: arranged with NAPI, and the device still exists. */
	if (!bpf_map_lookup_elem(&BPFNET_MAP_FP_TX, &dst->port_ifindex))
		return BPFNET_FP_NO_NAPI;
	if (reason == BPFNET_PASS_FORWARD &&
	    (conntrack_direction(xdp, p, &nat) != IP_CT_DIR_ORIGINAL || nat))
		return BPFNET_FP_CONNTRACK;

	event = fp_fib_route(xdp, ip, p, xdp->ingress_ifindex, 1, &fib);
	if (event != BPFNET_FP_HIT)
		return event;
	if (fib.ifindex != network_get(dst->network)->bridge_ifindex)
		return BPFNET_FP_FIB;
	if (!mac_equal(fib.dmac, dst->mac))
		return BPFNET_FP_MAC;

	/* Writes: only from here on. */
	if ((void *)(ip + 1) > (void *)(long)xdp->data_end)
		return BPFNET_FP_FIB;
	__builtin_memcpy(eth->h_dest, dst->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	ipv4_decrease_ttl(ip);
	*port = dst->port_ifindex;
	return BPFNET_FP_HIT;
}

SEC("xdp")
int bpfnet_ext_xdp(struct xdp_md *xdp)
{
	const struct bpfnet_config *cfg;
	enum bpfnet_fastpath_event event;
	enum bpfnet_reason reason;
	struct parsed p = {};
	struct pkt pkt;
	__u32 port = 0;

	pkt_from_xdp(xdp, &pkt);
	reason = ext_policy(xdp, &pkt, &p, &cfg);
	if (account(BPFNET_PROG_EXT_XDP, reason, &pkt, &p, xdp->ingress_ifindex) == PKT_DROP)
		return XDP_DROP;

	/* A published port: eBPF NAT (nat.h) when on, else netfilter's DNAT;
	 * an ICMP error to the host may be about one of its connections. */
	if (reason == BPFNET_PASS_PUBLISHED)
		event = ext_nat(xdp, cfg, &p, &port);
	else if (reason == BPFNET_PASS_LOCAL && p.proto == IPPROTO_ICMP)
		event = ext_nat_icmp_error(xdp, cfg, &p, &port);
	else
		event = ext_fast_path(xdp, cfg, &p, reason, &port);
	if (event == BPFNET_FP_HIT) {
		/* Only invalid flags make it fail; the frame is rewritten by now,
		 * so it is dropped rather than routed a second time. */
		if (bpf_redirect_map(&BPFNET_MAP_FP_TX, port, 0) == XDP_REDIRECT) {
			fp_account(BPFNET_PROG_EXT_XDP, BPFNET_FP_HIT, &pkt);
			return XDP_REDIRECT;
		}
		fp_account(BPFNET_PROG_EXT_XDP, BPFNET_FP_REDIRECT, &pkt);
		return XDP_DROP;
	}
	fp_account(BPFNET_PROG_EXT_XDP, event, &pkt);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
