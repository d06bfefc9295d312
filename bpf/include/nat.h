/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat.h — eBPF NAT for published ports (--nat ebpf; docs/nat.md).
 *
 * A connection from the outside to a published port (row 8 passed: the
 * allow-list and everything before it judged the packet first) is translated
 * by the ext program (XDP): destination address and port become the
 * container's, checksums are updated incrementally, TTL - 1, and the frame is
 * redirected into the container's port through bn_fp_tx, around the host's
 * routing, netfilter and the bridge. The container's replies are translated
 * back by the port program (tc: source address and port become the host
 * address and published port the outside reached) and leave through the
 * interface the FIB names (bpf_redirect, or bpf_redirect_neigh while the
 * neighbour is unresolved).
 *
 * State is bpfnet's own (bn_nat, an LRU hash; two entries per connection, see
 * bpfnet_shared.h), not conntrack's: the stack never sees these packets.
 * Anything the programs do not take goes up the stack as before, where
 * netfilter's DNAT for the same ports stays in place: fragments, IP options,
 * VLAN tags, TTL <= 1, protocols other than TCP and UDP, IPv6 (docker-proxy's
 * [::]), a TCP segment without a live connection that is not a SYN (e.g. a
 * connection that netfilter already tracks: it stays there), a reply tuple
 * another live connection holds, a destination that is not a local address
 * (wildcard bindings), no route or neighbour towards the container yet, and
 * frames whose checksums may be partial. Only a new connection (TCP SYN, any
 * UDP datagram) opens an entry, and only while BPFNET_CFG_NAT is set; with
 * BPFNET_CFG_NAT_DRAIN alone, live connections keep being translated but no
 * new ones open (the switch to --nat netfilter).
 *
 * BPF only.
 */
#ifndef BPFNET_NAT_H
#define BPFNET_NAT_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "bpfnet_shared.h"
#include "ctx.h"
#include "fastpath.h"
#include "maps.h"
#include "parse.h"

#define NAT_NS_PER_SEC 1000000000ULL
#define NAT_TCP_FIN    0x01
#define NAT_TCP_SYN    0x02
#define NAT_TCP_RST    0x04
#define NAT_TCP_ACK    0x10

/* Frame offsets of an untagged IPv4 packet without options (all NAT takes). */
#define NAT_IP_OFF	 ETH_HLEN
#define NAT_L4_OFF	 (ETH_HLEN + sizeof(struct iphdr))
#define NAT_IP_CHECK_OFF (NAT_IP_OFF + offsetof(struct iphdr, check))
#define NAT_IP_SADDR_OFF (NAT_IP_OFF + offsetof(struct iphdr, saddr))

/* The idle timeout of a connection in this state (conntrack's defaults). */
static __always_inline __u64 nat_timeout_ns(__u8 proto, __u8 state)
{
	__u64 seconds;

	if (proto == IPPROTO_TCP) {
		if (state & BPFNET_NAT_RST)
			seconds = BPFNET_NAT_TCP_CLOSE;
		else if (state & (BPFNET_NAT_FIN_OUTSIDE | BPFNET_NAT_FIN_INSIDE))
			seconds = BPFNET_NAT_TCP_CLOSING;
		else if (state & BPFNET_NAT_REPLIED)
			seconds = BPFNET_NAT_TCP_ESTABLISHED;
		else
			seconds = BPFNET_NAT_TCP_SYN_SENT;
	} else {
		seconds = (state & BPFNET_NAT_REPLIED) ? BPFNET_NAT_UDP_REPLIED :
							 BPFNET_NAT_UDP_UNREPLIED;
	}
	return seconds * NAT_NS_PER_SEC;
}

/* Live: seen within its timeout. Another CPU may have stamped it after `now`. */
static __always_inline int nat_live(const struct bpfnet_nat_entry *orig, __u8 proto, __u64 now)
{
	__u64 seen = orig->seen_ns;

	return now <= seen || now - seen <= nat_timeout_ns(proto, orig->state);
}

static __always_inline int nat_key_equal(const struct bpfnet_nat_key *a,
					 const struct bpfnet_nat_key *b)
{
	return a->saddr == b->saddr && a->daddr == b->daddr && a->sport == b->sport &&
	       a->dport == b->dport && a->proto == b->proto;
}

/* A closed TCP connection's tuple may be reused by a new SYN at once. */
static __always_inline int nat_closing(const struct bpfnet_nat_entry *orig)
{
	return orig->state & (BPFNET_NAT_RST | BPFNET_NAT_FIN_OUTSIDE | BPFNET_NAT_FIN_INSIDE);
}

static __always_inline void nat_track_tcp(struct bpfnet_nat_entry *orig, __u8 tcp_flags,
					  __u8 fin_state)
{
	if (tcp_flags & NAT_TCP_RST)
		orig->state |= BPFNET_NAT_RST;
	else if (tcp_flags & NAT_TCP_FIN)
		orig->state |= fin_state;
}

/*
 * RFC 1624 (eqn. 3): a 16-bit one's complement checksum after a 32-bit word
 * of the data it covers changed from `from` to `to`. Byte order does not
 * matter as long as all three come from memory alike.
 */
static __always_inline __u16 csum_replace32(__u16 check, __u32 from, __u32 to)
{
	__u32 sum = (__u16)~check;

	sum += ((~from) >> 16) + ((~from) & 0xFFFF) + (to >> 16) + (to & 0xFFFF);
	sum = (sum & 0xFFFF) + (sum >> 16);
	sum = (sum & 0xFFFF) + (sum >> 16);
	return (__u16)~sum;
}

static __always_inline __u16 csum_replace16(__u16 check, __u16 from, __u16 to)
{
	__u32 sum = (__u16)~check + (__u32)(__u16)~from + (__u32)to;

	sum = (sum & 0xFFFF) + (sum >> 16);
	sum = (sum & 0xFFFF) + (sum >> 16);
	return (__u16)~sum;
}

/* Which published port (specific address first, then the wildcard) a packet reaches. */
static __always_inline const struct bpfnet_published_value *
published_target(__be32 daddr, __be16 dport, __u8 proto, int *wildcard)
{
	struct bpfnet_published_key key = {
		.host_addr = daddr,
		.host_port = dport,
		.proto = proto,
	};
	const struct bpfnet_published_value *target;

	*wildcard = 0;
	target = bpf_map_lookup_elem(&BPFNET_MAP_PUBLISHED, &key);
	if (target)
		return target;
	*wildcard = 1;
	key.host_addr = 0;
	return bpf_map_lookup_elem(&BPFNET_MAP_PUBLISHED, &key);
}

/*
 * The LRU evicts entries one by one: a connection that lost its reply entry
 * gets it back from the original, which holds all it needs, unless another
 * connection took the tuple meanwhile. Looking it up also keeps it recent
 * while only the outside sends. 1 when the reply entry is this connection's.
 */
static __always_inline int nat_reply_in_place(const struct bpfnet_nat_entry *orig,
					      const struct bpfnet_nat_key *key)
{
	const struct bpfnet_nat_entry *reply = bpf_map_lookup_elem(&BPFNET_MAP_NAT, &orig->other);
	struct bpfnet_nat_entry entry = {
		.created_ns = orig->created_ns,
		.other = *key,
		.addr = key->daddr,
		.port = key->dport,
		.direction = BPFNET_NAT_REPLY,
		.port_ifindex = orig->port_ifindex,
		.ext_ifindex = orig->ext_ifindex,
	};

	if (reply)
		return reply->direction == BPFNET_NAT_REPLY && nat_key_equal(&reply->other, key);
	return bpf_map_update_elem(&BPFNET_MAP_NAT, &orig->other, &entry, BPF_NOEXIST) == 0;
}

/*
 * The other half: a reply whose original entry the LRU evicted gets it back
 * (as an answered connection, seen now) when the reply entry itself is
 * recent and the reply comes from the connection's port. NULL otherwise.
 */
static __always_inline struct bpfnet_nat_entry *
nat_restore_original(const struct bpfnet_nat_entry *reply, const struct bpfnet_nat_key *key,
		     __u32 ifindex, __u64 now)
{
	struct bpfnet_nat_entry entry = {
		.created_ns = reply->created_ns,
		.seen_ns = now,
		.other = *key,
		.addr = key->saddr,
		.port = key->sport,
		.direction = BPFNET_NAT_ORIGINAL,
		.state = BPFNET_NAT_REPLIED,
		.port_ifindex = reply->port_ifindex,
		.ext_ifindex = reply->ext_ifindex,
	};
	__u64 seen = reply->seen_ns > reply->created_ns ? reply->seen_ns : reply->created_ns;

	if (reply->port_ifindex != ifindex ||
	    (now > seen && now - seen > nat_timeout_ns(key->proto, BPFNET_NAT_REPLIED)))
		return NULL;
	if (bpf_map_update_elem(&BPFNET_MAP_NAT, &reply->other, &entry, BPF_NOEXIST))
		return NULL;
	return bpf_map_lookup_elem(&BPFNET_MAP_NAT, &reply->other);
}

/*
 * Opens a connection: the reply entry first (a reply entry without its
 * original is never used), then the original, which is returned. NULL when
 * the reply tuple belongs to another live connection (two published ports
 * of one container reached from the same outside address and port), or
 * when the map refuses.
 */
static __always_inline struct bpfnet_nat_entry *
nat_open(const struct bpfnet_nat_key *key, const struct bpfnet_published_value *target,
	 const struct bpfnet_container *dst, __u32 ext_ifindex, __u64 now)
{
	struct bpfnet_nat_key reply_key = {
		.saddr = target->container_addr,
		.daddr = key->saddr,
		.sport = target->container_port,
		.dport = key->sport,
		.proto = key->proto,
	};
	struct bpfnet_nat_entry entry = {
		.created_ns = now,
		.other = *key,
		.addr = key->daddr,
		.port = key->dport,
		.direction = BPFNET_NAT_REPLY,
		.port_ifindex = dst->port_ifindex,
		.ext_ifindex = ext_ifindex,
	};
	const struct bpfnet_nat_entry *held, *holder;

	held = bpf_map_lookup_elem(&BPFNET_MAP_NAT, &reply_key);
	if (held && held->direction == BPFNET_NAT_REPLY && !nat_key_equal(&held->other, key)) {
		holder = bpf_map_lookup_elem(&BPFNET_MAP_NAT, &held->other);
		if (holder && nat_key_equal(&holder->other, &reply_key) &&
		    nat_live(holder, key->proto, now))
			return NULL;
	}
	if (bpf_map_update_elem(&BPFNET_MAP_NAT, &reply_key, &entry, BPF_ANY))
		return NULL;

	/* The same record, now for the original direction. */
	entry.seen_ns = now;
	entry.other = reply_key;
	entry.addr = target->container_addr;
	entry.port = target->container_port;
	entry.direction = BPFNET_NAT_ORIGINAL;
	if (bpf_map_update_elem(&BPFNET_MAP_NAT, key, &entry, BPF_ANY))
		return NULL;
	return bpf_map_lookup_elem(&BPFNET_MAP_NAT, key);
}

/*
 * Outside -> host address:published port, row 8 passed: may the ext program
 * translate it and hand it to the container? Every check comes before the
 * first write, so a fallback leaves the frame exactly as it arrived. On a hit
 * *port is the container's host-side veth.
 */
static __always_inline enum bpfnet_fastpath_event
ext_nat(struct xdp_md *xdp, const struct bpfnet_config *cfg, const struct parsed *p, __u32 *port)
{
	void *data = (void *)(long)xdp->data;
	void *data_end = (void *)(long)xdp->data_end;
	const struct bpfnet_published_value *target;
	const struct bpfnet_container *dst;
	const struct bpfnet_fp_if *ingress;
	struct bpf_fib_lookup fib = {};
	enum bpfnet_fastpath_event event;
	struct bpfnet_nat_entry *orig;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + NAT_IP_OFF;
	struct bpfnet_nat_key key = {};
	__u8 tcp_flags = 0;
	__u16 *l4_check;
	int wildcard;
	__u64 now;

	if (!(cfg->flags & (BPFNET_CFG_NAT | BPFNET_CFG_NAT_DRAIN)))
		return BPFNET_FP_VERDICT; /* netfilter's DNAT */
	if (!p->ipv4)
		return BPFNET_FP_NOT_IPV4; /* [::]: docker-proxy's */
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return BPFNET_FP_PROTOCOL;
	if (p->vlan_tags)
		return BPFNET_FP_VLAN;
	if ((void *)(ip + 1) > data_end)
		return BPFNET_FP_FIB; /* cannot happen after the parse; for the verifier */
	event = fp_routable(ip);
	if (event != BPFNET_FP_HIT)
		return event;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(ip + 1);

		if ((void *)(tcp + 1) > data_end)
			return BPFNET_FP_FIB;
		tcp_flags = ((__u8 *)tcp)[13];
		l4_check = (__u16 *)&tcp->check;
	} else {
		struct udphdr *udp = (void *)(ip + 1);

		if ((void *)(udp + 1) > data_end)
			return BPFNET_FP_FIB;
		l4_check = (__u16 *)&udp->check;
	}
	/* Addressed to the ingress interface, with complete checksums (XDP
	 * redirects a frame as it is; the receiver verifies it). */
	ingress = fp_if(xdp->ingress_ifindex);
	if (!ingress || !(ingress->flags & BPFNET_FP_IF_FULL_CSUM))
		return BPFNET_FP_PARTIAL_CSUM;
	if (!mac_equal(eth->h_dest, ingress->mac))
		return BPFNET_FP_MAC;
	target = published_target(p->daddr, p->dport, p->proto, &wildcard);
	if (!target)
		return BPFNET_FP_UNKNOWN_DEST; /* cannot happen after row 8 */
	dst = bpf_map_lookup_elem(&BPFNET_MAP_CONTAINERS, &target->container_addr);
	if (!dst || !dst->port_ifindex)
		return BPFNET_FP_UNKNOWN_DEST;
	if (!bpf_map_lookup_elem(&BPFNET_MAP_FP_TX, &dst->port_ifindex))
		return BPFNET_FP_NO_NAPI;

	key.saddr = p->saddr;
	key.daddr = p->daddr;
	key.sport = p->sport;
	key.dport = p->dport;
	key.proto = p->proto;
	now = bpf_ktime_get_ns();
	orig = bpf_map_lookup_elem(&BPFNET_MAP_NAT, &key);
	if (orig &&
	    (orig->direction != BPFNET_NAT_ORIGINAL || !nat_live(orig, p->proto, now) ||
	     orig->addr != target->container_addr || orig->port != target->container_port ||
	     orig->port_ifindex != dst->port_ifindex ||
	     ((tcp_flags & (NAT_TCP_SYN | NAT_TCP_ACK)) == NAT_TCP_SYN && nat_closing(orig))))
		orig = NULL; /* expired, for another container now, or its tuple reused */
	/* Its replies must be translated back too, or it is not translated in
	 * either (then netfilter takes it, both ways). */
	if (orig && !nat_reply_in_place(orig, &key))
		orig = NULL;
	if (!orig) {
		if (!(cfg->flags & BPFNET_CFG_NAT))
			return BPFNET_FP_NAT_STATE; /* draining: no new connections */
		if (p->proto == IPPROTO_TCP &&
		    (tcp_flags & (NAT_TCP_SYN | NAT_TCP_ACK | NAT_TCP_RST | NAT_TCP_FIN)) !=
			    NAT_TCP_SYN)
			return BPFNET_FP_NAT_STATE; /* mid-stream: whoever tracks it */
		/* The route to the container, as the stack would take it after
		 * DNAT: forwarding on the ingress device, via the container's
		 * bridge, to a neighbour that is the container. Checked when the
		 * connection opens; its later packets take the same way (a FIB
		 * lookup cost ~220 ns a packet here, a quarter of the program). */
		event = fp_fib_route_to(xdp, ip, p->sport, target->container_addr,
					target->container_port, xdp->ingress_ifindex, 1, &fib);
		if (event != BPFNET_FP_HIT)
			return event;
		if (fib.ifindex != network_get(dst->network)->bridge_ifindex)
			return BPFNET_FP_FIB;
		if (!mac_equal(fib.dmac, dst->mac))
			return BPFNET_FP_MAC;
		/* Docker DNATs only packets to a local address: the FIB says
		 * NOT_FWDED for those. A specific binding names a host address. */
		if (wildcard) {
			struct bpf_fib_lookup local = {
				.family = AF_INET,
				.ipv4_src = p->saddr,
				.ipv4_dst = p->daddr,
				.ifindex = xdp->ingress_ifindex,
			};

			if (bpf_fib_lookup(xdp, &local, sizeof(local), 0) !=
			    BPF_FIB_LKUP_RET_NOT_FWDED)
				return BPFNET_FP_NAT_STATE;
		}
		orig = nat_open(&key, target, dst, xdp->ingress_ifindex, now);
		if (!orig)
			return BPFNET_FP_NAT_STATE;
	} else {
		orig->seen_ns = now;
	}
	if (p->proto == IPPROTO_TCP)
		nat_track_tcp(orig, tcp_flags, BPFNET_NAT_FIN_OUTSIDE);
	orig->packets += 1;
	orig->bytes += (__u64)(data_end - data);

	/* Writes: only from here on. From the bridge's MAC, as routed. */
	__builtin_memcpy(eth->h_dest, dst->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, network_get(dst->network)->bridge_mac, ETH_ALEN);
	if (p->proto == IPPROTO_TCP || *l4_check) {
		/* The pseudo-header's address, then the port. A UDP checksum of 0
		 * means none; a computed 0 is sent as 0xFFFF (RFC 768). */
		__u16 check = csum_replace32(*l4_check, ip->daddr, target->container_addr);

		check = csum_replace16(check, p->dport, target->container_port);
		if (p->proto == IPPROTO_UDP && check == 0)
			check = 0xFFFF;
		*l4_check = check;
	}
	if (p->proto == IPPROTO_TCP)
		((struct tcphdr *)(ip + 1))->dest = target->container_port;
	else
		((struct udphdr *)(ip + 1))->dest = target->container_port;
	ip->check = csum_replace32(ip->check, ip->daddr, target->container_addr);
	ip->daddr = target->container_addr;
	ipv4_decrease_ttl(ip);
	*port = dst->port_ifindex;
	return BPFNET_FP_HIT;
}

/*
 * An ICMP error to the host (row 11 passed) about a datagram of an eBPF NAT
 * connection — the container's translated reply, quoted: source the host
 * address and published port — e.g. fragmentation needed from a router on
 * the way to the outside peer. Without translation it would reach the host,
 * which has no such connection, and path MTU discovery would stall. It is
 * translated as netfilter translates a RELATED error: the outer destination
 * and the quoted source address and port become the container's (the quoted
 * IPv4 checksum and the ICMP checksum updated; the quoted TCP/UDP checksum,
 * often cut off, is left alone, as the receiving stack ignores it), and it is
 * delivered like the connection's packets. Anything else: the stack, untouched.
 */
static __always_inline enum bpfnet_fastpath_event
ext_nat_icmp_error(struct xdp_md *xdp, const struct bpfnet_config *cfg, const struct parsed *p,
		   __u32 *port)
{
	void *data = (void *)(long)xdp->data;
	void *data_end = (void *)(long)xdp->data_end;
	const struct bpfnet_container *dst;
	const struct bpfnet_fp_if *ingress;
	struct bpfnet_nat_entry *orig;
	struct bpf_fib_lookup fib = {};
	enum bpfnet_fastpath_event event;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + NAT_IP_OFF;
	struct icmp_error *error = data + NAT_L4_OFF;
	struct bpfnet_nat_key key = {};
	__u16 check, inner_check;
	__be32 inner_saddr;

	if (!(cfg->flags & (BPFNET_CFG_NAT | BPFNET_CFG_NAT_DRAIN)))
		return BPFNET_FP_VERDICT;
	if (!p->ipv4 || p->vlan_tags)
		return BPFNET_FP_VERDICT;
	if ((void *)(error + 1) > data_end || ip->ihl != 5)
		return BPFNET_FP_VERDICT;
	if (error->type != ICMP_DEST_UNREACH && error->type != ICMP_TIME_EXCEEDED &&
	    error->type != ICMP_PARAMETERPROB)
		return BPFNET_FP_VERDICT;
	if (error->inner.version != 4 || error->inner.ihl != 5 ||
	    (error->inner.protocol != IPPROTO_TCP && error->inner.protocol != IPPROTO_UDP) ||
	    error->inner.saddr != p->daddr)
		return BPFNET_FP_VERDICT;
	/* The connection, in its original direction: the quoted tuple reversed. */
	key.saddr = error->inner.daddr;
	key.daddr = error->inner.saddr;
	key.sport = error->inner_dport;
	key.dport = error->inner_sport;
	key.proto = error->inner.protocol;
	orig = bpf_map_lookup_elem(&BPFNET_MAP_NAT, &key);
	if (!orig || orig->direction != BPFNET_NAT_ORIGINAL ||
	    !nat_live(orig, key.proto, bpf_ktime_get_ns()))
		return BPFNET_FP_VERDICT; /* not an eBPF connection's: the host's business */

	event = fp_routable(ip);
	if (event != BPFNET_FP_HIT)
		return event;
	ingress = fp_if(xdp->ingress_ifindex);
	if (!ingress || !(ingress->flags & BPFNET_FP_IF_FULL_CSUM))
		return BPFNET_FP_PARTIAL_CSUM;
	if (!mac_equal(eth->h_dest, ingress->mac))
		return BPFNET_FP_MAC;
	dst = bpf_map_lookup_elem(&BPFNET_MAP_CONTAINERS, &orig->addr);
	if (!dst || dst->port_ifindex != orig->port_ifindex)
		return BPFNET_FP_UNKNOWN_DEST;
	if (!bpf_map_lookup_elem(&BPFNET_MAP_FP_TX, &dst->port_ifindex))
		return BPFNET_FP_NO_NAPI;
	event = fp_fib_route_to(xdp, ip, 0, orig->addr, 0, xdp->ingress_ifindex, 1, &fib);
	if (event != BPFNET_FP_HIT)
		return event;
	if (fib.ifindex != network_get(dst->network)->bridge_ifindex)
		return BPFNET_FP_FIB;
	if (!mac_equal(fib.dmac, dst->mac))
		return BPFNET_FP_MAC;

	/* Writes: only from here on. The ICMP checksum covers the quote. */
	__builtin_memcpy(eth->h_dest, dst->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	inner_saddr = error->inner.saddr;
	inner_check = error->inner.check;
	error->inner.check = csum_replace32(inner_check, inner_saddr, orig->addr);
	error->inner.saddr = orig->addr;
	check = csum_replace32(error->checksum, inner_saddr, orig->addr);
	check = csum_replace16(check, inner_check, error->inner.check);
	check = csum_replace16(check, error->inner_sport, orig->port);
	error->checksum = check;
	error->inner_sport = orig->port;
	ip->check = csum_replace32(ip->check, ip->daddr, orig->addr);
	ip->daddr = orig->addr;
	ipv4_decrease_ttl(ip);
	*port = dst->port_ifindex;
	return BPFNET_FP_HIT;
}

/*
 * Where a translated reply leaves (source `saddr`:`sport` once translated):
 * the FIB from the container's bridge, as the stack would route it. HIT or
 * NO_NEIGH (bpf_redirect_neigh resolves it) with *fib filled; anything else
 * goes to the stack untouched.
 */
static __always_inline enum bpfnet_fastpath_event
nat_reply_route(struct __sk_buff *skb, const struct iphdr *ip, __be32 saddr, __be16 sport,
		__be16 dport, struct bpf_fib_lookup *fib)
{
	const struct bpfnet_port *port = port_lookup(skb->ifindex);

	/* tc: the kernel checks the skb against the egress MTU (GSO-aware). */
	return fp_fib_route_between(skb, ip, saddr, sport, ip->daddr, dport,
				    network_get(port ? port->network : 0)->bridge_ifindex, 0, fib);
}

/* Sends a translated reply where nat_reply_route said: TTL, MACs, redirect. */
static __always_inline enum bpfnet_fastpath_event nat_reply_send(struct __sk_buff *skb,
								 enum bpfnet_fastpath_event route,
								 const struct bpf_fib_lookup *fib)
{
	struct ethhdr *eth = (void *)(long)skb->data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > (void *)(long)skb->data_end)
		return BPFNET_FP_REDIRECT;
	ipv4_decrease_ttl(ip);
	if (route == BPFNET_FP_NO_NEIGH)
		return bpf_redirect_neigh(fib->ifindex, NULL, 0, 0) == TC_ACT_REDIRECT ?
			       BPFNET_FP_HIT :
			       BPFNET_FP_REDIRECT;
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
	return bpf_redirect(fib->ifindex, 0) == TC_ACT_REDIRECT ? BPFNET_FP_HIT :
								  BPFNET_FP_REDIRECT;
}

/* An IPv4 packet's payload length in 8-byte units: a fragment's length. */
static __always_inline __u16 ipv4_fragment_units(const struct iphdr *ip)
{
	return (__u16)((bpf_ntohs(ip->tot_len) - ip->ihl * 4) >> 3);
}

/*
 * A fragment after the first of a UDP reply the container fragmented itself
 * (no UDP header): translated like its first fragment was (bn_nat_frags, by
 * IP id), only the source address and the IPv4 checksum change. It must
 * start where the one before it ended; the last one removes the entry.
 * VERDICT when its first fragment was not translated here (then the stack
 * has them all) or it is not the next one (then the stack holds it, and
 * the datagram, in pieces on two paths, is lost as on a lossy link).
 */
static __always_inline enum bpfnet_fastpath_event port_nat_reply_fragment(struct __sk_buff *skb,
									  const struct parsed *p)
{
	struct ethhdr *eth = (void *)(long)skb->data;
	struct iphdr *ip = (void *)(eth + 1);
	struct bpfnet_nat_frag_key key = {};
	enum bpfnet_fastpath_event route;
	struct bpf_fib_lookup fib = {};
	__be32 from_addr = p->saddr;
	struct bpfnet_nat_frag *frag;
	__u16 frag_off;
	__be32 to_addr;
	__u64 now;

	if (p->proto != IPPROTO_UDP || p->vlan_tags)
		return BPFNET_FP_VERDICT;
	if ((void *)(ip + 1) > (void *)(long)skb->data_end)
		return BPFNET_FP_VERDICT;
	key.saddr = ip->saddr;
	key.daddr = ip->daddr;
	key.id = ip->id;
	key.proto = ip->protocol;
	frag = bpf_map_lookup_elem(&BPFNET_MAP_NAT_FRAGS, &key);
	if (!frag || frag->port_ifindex != skb->ifindex)
		return BPFNET_FP_VERDICT;
	now = bpf_ktime_get_ns();
	if (now > frag->seen_ns && now - frag->seen_ns > BPFNET_NAT_FRAG_TIMEOUT * NAT_NS_PER_SEC)
		return BPFNET_FP_VERDICT;
	frag_off = bpf_ntohs(ip->frag_off);
	if ((frag_off & IP_FRAGMENT_OFFSET_MASK) != frag->next_offset)
		return BPFNET_FP_VERDICT;
	/* Its first fragment was translated: this one must follow it. */
	if (ip->ihl != 5)
		return BPFNET_FP_IP_OPTIONS;
	if (ip->ttl <= 1)
		return BPFNET_FP_TTL;
	to_addr = frag->addr;
	route = nat_reply_route(skb, ip, to_addr, 0, 0, &fib);
	if (route != BPFNET_FP_HIT && route != BPFNET_FP_NO_NEIGH)
		return route;
	if (frag_off & IP_MORE_FRAGMENTS)
		frag->next_offset += ipv4_fragment_units(ip);
	else
		bpf_map_delete_elem(&BPFNET_MAP_NAT_FRAGS, &key);
	if (bpf_l3_csum_replace(skb, NAT_IP_CHECK_OFF, from_addr, to_addr, sizeof(__be32)) ||
	    bpf_skb_store_bytes(skb, NAT_IP_SADDR_OFF, &to_addr, sizeof(__be32), 0))
		return BPFNET_FP_REDIRECT;
	return nat_reply_send(skb, route, &fib);
}

/*
 * Container -> outside (row 7 passed): a reply of an eBPF NAT connection?
 * VERDICT when it is none (the caller goes on as for any outside traffic).
 * Otherwise the packet is translated back and redirected (HIT), or, when the
 * stack must handle it, left untouched with the reason: IP options, a TCP
 * fragment (then netfilter sees a reply it has no entry for), or no route to
 * the outside (the stack answers the container, e.g. fragmentation needed).
 * A UDP reply the container fragmented itself is translated fragment by
 * fragment: the first here (which leaves its translation in bn_nat_frags),
 * the others by port_nat_reply_fragment. REDIRECT: the redirect failed after
 * the packet was rewritten; the caller drops it.
 */
static __always_inline enum bpfnet_fastpath_event
port_nat_reply(struct __sk_buff *skb, const struct bpfnet_config *cfg, const struct parsed *p)
{
	struct bpfnet_nat_key key = {
		.saddr = p->saddr,
		.daddr = p->daddr,
		.sport = p->sport,
		.dport = p->dport,
		.proto = p->proto,
	};
	__u32 check_off = NAT_L4_OFF + (p->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) :
								  offsetof(struct udphdr, check));
	__u64 mangled = p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	struct bpfnet_nat_entry *reply, *orig;
	enum bpfnet_fastpath_event event, route;
	struct bpf_fib_lookup fib = {};
	struct iphdr *ip;
	__u8 tcp_flags = 0;
	__be32 from_addr;
	__be16 from_port;
	int fragmented;
	__u64 now;

	if (!(cfg->flags & (BPFNET_CFG_NAT | BPFNET_CFG_NAT_DRAIN)))
		return BPFNET_FP_VERDICT;
	if (!p->ipv4 || (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP))
		return BPFNET_FP_VERDICT;
	if (p->nonfirst_fragment)
		return port_nat_reply_fragment(skb, p);
	if (!p->has_ports)
		return BPFNET_FP_VERDICT;
	reply = bpf_map_lookup_elem(&BPFNET_MAP_NAT, &key);
	if (!reply || reply->direction != BPFNET_NAT_REPLY)
		return BPFNET_FP_VERDICT;
	orig = bpf_map_lookup_elem(&BPFNET_MAP_NAT, &reply->other);
	now = bpf_ktime_get_ns();
	if (!orig)
		orig = nat_restore_original(reply, &key, skb->ifindex, now);
	/* Its connection must be live and be this port's: a container cannot
	 * take over another's (port_policy already refused forged sources). */
	if (!orig || orig->direction != BPFNET_NAT_ORIGINAL || !nat_key_equal(&orig->other, &key) ||
	    orig->port_ifindex != skb->ifindex || !nat_live(orig, p->proto, now))
		return BPFNET_FP_VERDICT;

	if (p->vlan_tags)
		return BPFNET_FP_VLAN;
	ip = (void *)(long)skb->data + NAT_IP_OFF;
	if ((void *)(ip + 1) > (void *)(long)skb->data_end)
		return BPFNET_FP_FIB;
	event = fp_routable(ip);
	/* The first fragment of a UDP reply the container's stack fragmented
	 * (TCP keeps to the path MTU; a fragment of it goes to the stack). */
	fragmented = event == BPFNET_FP_FRAGMENT && p->proto == IPPROTO_UDP;
	if (fragmented)
		event = ip->ttl <= 1 ? BPFNET_FP_TTL : BPFNET_FP_HIT;
	if (event != BPFNET_FP_HIT)
		return event;
	if (p->proto == IPPROTO_TCP) {
		__u8 *tcp = (void *)(ip + 1);

		if ((void *)(tcp + 14) > (void *)(long)skb->data_end)
			return BPFNET_FP_FIB;
		tcp_flags = tcp[13];
	}

	/* A fragment is routed without ports, as the stack routes fragments
	 * (the multipath hash takes no ports from them): the later ones, which
	 * carry none, take the same way. */
	route = nat_reply_route(skb, ip, reply->addr, fragmented ? 0 : reply->port,
				fragmented ? 0 : p->dport, &fib);
	if (route != BPFNET_FP_HIT && route != BPFNET_FP_NO_NEIGH)
		return route;
	if (fragmented) {
		/* The fragments after it follow its translation, or, when it
		 * cannot be left for them, all of them take the stack. */
		struct bpfnet_nat_frag_key frag_key = {
			.saddr = p->saddr,
			.daddr = p->daddr,
			.id = ip->id,
			.proto = p->proto,
		};
		struct bpfnet_nat_frag frag = {
			.seen_ns = now,
			.addr = reply->addr,
			.port_ifindex = skb->ifindex,
			.next_offset = ipv4_fragment_units(ip),
		};

		if (bpf_map_update_elem(&BPFNET_MAP_NAT_FRAGS, &frag_key, &frag, BPF_ANY))
			return BPFNET_FP_FRAGMENT;
	}

	orig->seen_ns = now;
	reply->seen_ns = now;
	orig->state |= BPFNET_NAT_REPLIED;
	if (p->proto == IPPROTO_TCP)
		nat_track_tcp(orig, tcp_flags, BPFNET_NAT_FIN_INSIDE);
	reply->packets += 1;
	reply->bytes += skb->len;

	/* Writes. The helpers keep a partial (offloaded) checksum right; a
	 * first fragment's UDP checksum covers the whole datagram, and the
	 * same incremental update holds for it. */
	from_addr = p->saddr;
	from_port = p->sport;
	if (bpf_l4_csum_replace(skb, check_off, from_addr, reply->addr,
				BPF_F_PSEUDO_HDR | mangled | sizeof(__be32)) ||
	    bpf_l4_csum_replace(skb, check_off, from_port, reply->port, mangled | sizeof(__be16)) ||
	    bpf_l3_csum_replace(skb, NAT_IP_CHECK_OFF, from_addr, reply->addr, sizeof(__be32)) ||
	    bpf_skb_store_bytes(skb, NAT_IP_SADDR_OFF, &reply->addr, sizeof(__be32), 0) ||
	    bpf_skb_store_bytes(skb, NAT_L4_OFF, &reply->port, sizeof(__be16), 0))
		return BPFNET_FP_REDIRECT;
	return nat_reply_send(skb, route, &fib);
}

#endif /* BPFNET_NAT_H */
