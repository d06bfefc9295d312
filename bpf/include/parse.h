/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h — header parsing with a bounds check right before every access
 * (xdp-tools' cursor style). The rules, including what counts as malformed,
 * are spelled out in docs/verdicts.md and mirrored by the Swift reference
 * model; change both together.
 *
 * BPF only.
 */
#ifndef BPFNET_PARSE_H
#define BPFNET_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include "ctx.h"

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

#define BPFNET_MAX_VLAN_TAGS	2
#define IP_FRAGMENT_OFFSET_MASK 0x1FFF /* IPv4 frag_off, host order: in 8-byte units */
#define IP_MORE_FRAGMENTS	0x2000

struct vlan_tag {
	__be16 tci;
	__be16 inner_proto;
};

#ifndef ETH_P_ARP
#define ETH_P_ARP 0x0806
#endif
#define ARP_HW_ETHER 1

enum parse_kind {
	PARSE_MALFORMED = 0, /* a header the frame claims is truncated or inconsistent */
	PARSE_OTHER,	     /* neither IPv4, IPv6 nor IPv4-over-Ethernet ARP           */
	PARSE_IPV4,
	PARSE_IPV6,
	PARSE_ARP,   /* IPv4 over Ethernet ARP, 28 bytes: saddr is the sender   */
	PARSE_ENCAP, /* still a VLAN tag after BPFNET_MAX_VLAN_TAGS            */
};

/* The fixed part of an IPv4-over-Ethernet ARP packet (RFC 826). */
struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__be32 spa;
	__u8 tha[6];
	__be32 tpa;
} __attribute__((packed));

/* An ICMP error (RFC 792) with the start of the datagram it is about. */
struct icmp_error {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be32 unused; /* or the next-hop MTU of "fragmentation needed" */
	struct iphdr inner;
	__be16 inner_sport;
	__be16 inner_dport;
} __attribute__((packed));

#define ICMP_DEST_UNREACH     3
#define ICMP_TIME_EXCEEDED    11
#define ICMP_PARAMETERPROB    12
#define ICMP_ERROR_MAX_OFFSET 128 /* L4 offsets are at most 14 + 8 + 60 */

struct parsed {
	const __u8 *dst_mac;   /* Ethernet destination, always 6 readable bytes */
	const __u8 *src_mac;   /* Ethernet source, always 6 readable bytes      */
	const __u8 *arp_sha;   /* ARP sender hardware address (PARSE_ARP only)  */
	const __u8 *saddr6;    /* IPv6 source address, 16 bytes (PARSE_IPV6 only) */
	const __u8 *daddr6;    /* IPv6 destination address, 16 bytes (PARSE_IPV6 only) */
	__u8 daddr6_multicast; /* IPv6 destination in ff00::/8 (PARSE_IPV6 only) */
	__be32 saddr;	       /* IPv4 source or ARP sender; IPv4 only below    */
	__be32 daddr;
	__be16 sport; /* valid when has_ports                          */
	__be16 dport;
	__u8 proto;
	__u8 has_ports; /* TCP/UDP/SCTP and not a non-first fragment     */
	__u8 nonfirst_fragment;
	__u8 vlan_tags;	 /* VLAN tags in front of the IP header (0-2)     */
	__u8 ipv4;	 /* an IPv4 packet that passed the parse checks    */
	__u16 l4_offset; /* frame offset of the L4 header (IPv6: of the
			  * first header after the fixed one)           */
	__u16 ip_end;	 /* IPv4: frame offset where tot_len ends        */
	__u8 hop_limit6; /* IPv6 hop limit (PARSE_IPV6 only)             */
};

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

/*
 * mac_equal with two loads a side instead of six, for the port program's
 * checks on every frame. Only for packet and map value pointers: they may be
 * unaligned (a MAC sits at offset 6 of the frame), which the verifier allows
 * without BPF_F_STRICT_ALIGNMENT, but never on the stack.
 */
static __always_inline int mac_equal_fast(const __u8 *packet_or_map, const __u8 *other)
{
	return *(const __u32 *)packet_or_map == *(const __u32 *)other &&
	       *(const __u16 *)(packet_or_map + 4) == *(const __u16 *)(other + 4);
}

struct cursor {
	void *pos;
	__u32 offset; /* bytes from the start of the frame to pos, as a plain scalar */
};

/* Minimum L4 header carrying the ports, or 0 when the protocol has none. */
static __always_inline __u32 l4_min_len(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 20;
	case IPPROTO_UDP:
		return 8;
	case IPPROTO_SCTP:
		return 12;
	default:
		return 0;
	}
}

static __always_inline int parse_eth(const struct pkt *pkt, struct cursor *c, struct parsed *p,
				     __be16 *proto)
{
	struct ethhdr *eth = c->pos;
	struct vlan_tag *tag;
	int i;

	if ((void *)(eth + 1) > pkt->data_end)
		return -1;
	p->dst_mac = eth->h_dest;
	p->src_mac = eth->h_source;
	*proto = eth->h_proto;
	c->pos = eth + 1;
	c->offset = sizeof(*eth);

	/* Policy applies to the inner packet: a tag must not be a way around it. */
#pragma unroll
	for (i = 0; i < BPFNET_MAX_VLAN_TAGS; i++) {
		if (*proto != bpf_htons(ETH_P_8021Q) && *proto != bpf_htons(ETH_P_8021AD))
			break;
		tag = c->pos;
		if ((void *)(tag + 1) > pkt->data_end)
			return -1;
		*proto = tag->inner_proto;
		c->pos = tag + 1;
		c->offset += sizeof(*tag);
		p->vlan_tags++;
	}
	return 0;
}

/* ARP of another hardware or protocol type, or a short one, is PARSE_OTHER. */
static __always_inline enum parse_kind parse_arp(const struct pkt *pkt, struct cursor *c,
						 struct parsed *p)
{
	struct arp_ipv4 *arp = c->pos;

	if ((void *)(arp + 1) > pkt->data_end)
		return PARSE_OTHER;
	if (arp->htype != bpf_htons(ARP_HW_ETHER) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != 6 || arp->plen != 4)
		return PARSE_OTHER;
	p->arp_sha = arp->sha;
	p->saddr = arp->spa;
	return PARSE_ARP;
}

static __always_inline enum parse_kind parse_ipv4(const struct pkt *pkt, struct cursor *c,
						  struct parsed *p)
{
	struct iphdr *ip = c->pos;
	__u32 hdr_len, tot_len, min_l4;
	__be16 *ports;
	void *l4;

	if ((void *)(ip + 1) > pkt->data_end)
		return PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_MALFORMED;
	hdr_len = ip->ihl * 4;
	if ((void *)ip + hdr_len > pkt->data_end)
		return PARSE_MALFORMED;
	tot_len = bpf_ntohs(ip->tot_len);
	/* Shorter frames than tot_len claims are truncated; longer ones are padding. */
	if (tot_len < hdr_len || c->offset + tot_len > pkt->len)
		return PARSE_MALFORMED;

	p->ipv4 = 1;
	p->l4_offset = c->offset + hdr_len;
	p->ip_end = c->offset + tot_len;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->nonfirst_fragment = (bpf_ntohs(ip->frag_off) & IP_FRAGMENT_OFFSET_MASK) != 0;
	if (p->nonfirst_fragment)
		return PARSE_IPV4; /* no L4 header in this fragment */

	min_l4 = l4_min_len(ip->protocol);
	if (!min_l4)
		return PARSE_IPV4;
	l4 = (void *)ip + hdr_len;
	if (hdr_len + min_l4 > tot_len || l4 + min_l4 > pkt->data_end)
		return PARSE_MALFORMED;
	ports = l4;
	if ((void *)(ports + 2) > pkt->data_end) /* implied by the check above; for the verifier */
		return PARSE_MALFORMED;
	p->sport = ports[0];
	p->dport = ports[1];
	p->has_ports = 1;
	return PARSE_IPV4;
}

/* Parses a frame from its Ethernet header; see docs/verdicts.md "Parsing". */
static __always_inline enum parse_kind parse_frame(const struct pkt *pkt, struct parsed *p)
{
	struct cursor c = { .pos = pkt->data, .offset = 0 };
	__be16 proto;

	if (parse_eth(pkt, &c, p, &proto) < 0)
		return PARSE_MALFORMED;
	/* A deeper stack is one the receiving stack may peel (VID 0) to an IP
	 * packet that was never judged. */
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return PARSE_ENCAP;
	if (proto == bpf_htons(ETH_P_ARP))
		return parse_arp(pkt, &c, p);
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(pkt, &c, p);
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = c.pos;

		if ((void *)(ip6 + 1) > pkt->data_end)
			return PARSE_MALFORMED;
		/* Where the ext program starts its walk to the L4 header. */
		p->proto = ip6->nexthdr;
		p->saddr6 = (const __u8 *)&ip6->saddr;
		p->daddr6 = (const __u8 *)&ip6->daddr;
		p->daddr6_multicast = ((const __u8 *)&ip6->daddr)[0] == 0xff;
		p->l4_offset = c.offset + sizeof(*ip6);
		p->hop_limit6 = ip6->hop_limit;
		return PARSE_IPV6;
	}
	return PARSE_OTHER;
}

#define IPV6_HOP_BY_HOP	     0
#define IPV6_ROUTING	     43
#define IPV6_FRAGMENT	     44
#define IPV6_DESTINATION     60
#define IPV6_MAX_EXT_HEADERS 4
#define IPV6_MAX_L4_OFFSET   512 /* bounds every read for the verifier */

static __always_inline int ipv6_extension(__u8 next)
{
	return next == IPV6_HOP_BY_HOP || next == IPV6_ROUTING || next == IPV6_FRAGMENT ||
	       next == IPV6_DESTINATION;
}

enum ipv6_walk {
	IPV6_WALK_L4,	      /* *next is the L4 protocol, starting at *offset  */
	IPV6_WALK_FRAGMENT,   /* a fragment header with a non-zero offset       */
	IPV6_WALK_UNREADABLE, /* cut short, too deep, or beyond 512 bytes        */
};

/*
 * Walks at most four extension headers (hop-by-hop, routing, fragment,
 * destination options; each whole in the frame and starting within 512
 * bytes) from the one after the fixed header to the L4 header. Whoever reads
 * the L4 header checks that it starts within 512 bytes too. *fragmented (when
 * asked for) says whether a fragment header was on the way: a first fragment
 * walks on to its L4 header.
 */
static __always_inline enum ipv6_walk ipv6_walk_to_l4(const struct pkt *pkt, const struct parsed *p,
						      __u8 *next, __u32 *offset, int *fragmented)
{
	const __u8 *header;
	int i;

	*next = p->proto;
	*offset = p->l4_offset;
	if (fragmented)
		*fragmented = 0;
#pragma unroll
	for (i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		if (!ipv6_extension(*next))
			break;
		if (*offset > IPV6_MAX_L4_OFFSET)
			return IPV6_WALK_UNREADABLE;
		header = pkt->data + *offset;
		if ((void *)(header + 8) > pkt->data_end)
			return IPV6_WALK_UNREADABLE;
		if (*next == IPV6_FRAGMENT) {
			if ((((__u16)header[2] << 8) | header[3]) & 0xFFF8)
				return IPV6_WALK_FRAGMENT;
			if (fragmented)
				*fragmented = 1;
			*offset += 8;
		} else {
			*offset += ((__u32)header[1] + 1) * 8;
		}
		*next = header[0];
	}
	if (ipv6_extension(*next))
		return IPV6_WALK_UNREADABLE; /* deeper than the walk goes */
	return IPV6_WALK_L4;
}

#endif /* BPFNET_PARSE_H */
