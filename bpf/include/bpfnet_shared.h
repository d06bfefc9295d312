/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bpfnet_shared.h — the one header that both the eBPF programs (clang -target
 * bpf) and the Swift control plane (through the BPFNetShared C module) compile.
 *
 * It owns everything that crosses the kernel/user line: map names, map
 * key/value layouts, flag bits, reason codes and program kinds. Swift never
 * re-declares these structs; it imports them from here. Every struct uses
 * fixed-width types, explicit padding and a _Static_assert on its size, and the
 * Swift test suite asserts the same sizes (Tests/BPFNetCoreTests/SharedLayoutTests).
 *
 * Byte order is visible in the type: __be16/__be32 fields hold network byte
 * order exactly as they appear in the packet; __u16/__u32 fields are host order.
 *
 * License: dual GPL-2.0-only / BSD-2-Clause so that it can be included in GPL
 * eBPF objects and in the Apache-2.0 Swift code alike.
 */
#ifndef BPFNET_SHARED_H
#define BPFNET_SHARED_H

#include <linux/types.h>

/* ------------------------------------------------------------------------ */
/* Map names. The BPF side uses the identifiers, the Swift side the strings   */
/* returned by bpfnet_map_name(), so each name is written exactly once.       */
/* Kernel object names are limited to 15 characters.                         */
/* ------------------------------------------------------------------------ */

#define BPFNET_MAP_CONFIG      bn_config      /* ARRAY[1]: struct bpfnet_config            */
#define BPFNET_MAP_CONTAINERS  bn_containers  /* HASH: __be32 addr -> bpfnet_container     */
#define BPFNET_MAP_MACS	       bn_macs	      /* HASH: bpfnet_mac_key -> __be32 addr       */
#define BPFNET_MAP_LINKS       bn_links	      /* HASH: bpfnet_link_key -> bpfnet_link_value*/
#define BPFNET_MAP_PUBLISHED   bn_published   /* HASH: bpfnet_published_key -> _value      */
#define BPFNET_MAP_EXT_IFS     bn_ext_ifs     /* HASH: __u32 ifindex -> bpfnet_ext_if      */
#define BPFNET_MAP_ALLOW_SRC   bn_allow_src   /* LPM_TRIE: bpfnet_allow_key -> __u32       */
#define BPFNET_MAP_COUNTERS    bn_counters    /* PERCPU_ARRAY: index -> bpfnet_counter     */
#define BPFNET_MAP_NAMES       bn_names	      /* HASH: __be32 addr -> bpfnet_container_name*/
#define BPFNET_MAP_ATTACH      bn_attach      /* HASH: bpfnet_attach_key -> _value         */
#define BPFNET_MAP_FP_COUNTERS bn_fp_counters /* PERCPU_ARRAY: fast-path events         */
#define BPFNET_MAP_FP_IFS      bn_fp_ifs      /* HASH: __u32 ifindex -> bpfnet_fp_if       */
#define BPFNET_MAP_FP_TX       bn_fp_tx	      /* DEVMAP_HASH, unpinned: ifindex -> ifindex */
#define BPFNET_MAP_DROPS       bn_drops	      /* RINGBUF: struct bpfnet_drop_event (sampled) */
#define BPFNET_MAP_DROP_RATE   bn_drop_rate   /* PERCPU_ARRAY[1]: struct bpfnet_drop_rate    */
#define BPFNET_MAP_PORTS       bn_ports	     /* ARRAY: ifindex < BPFNET_PORT_SLOTS -> bpfnet_port */
#define BPFNET_MAP_PORTS_HIGH  bn_ports_high /* HASH: __u32 ifindex (the rest) -> bpfnet_port */
#define BPFNET_MAP_ALLOW_SRC6  bn_allow_src6 /* LPM_TRIE: bpfnet_allow6_key -> __u32 */
#define BPFNET_MAP_NETWORKS    bn_networks   /* ARRAY: network id -> bpfnet_network */
#define BPFNET_MAP_SUBNETS     bn_subnets    /* LPM_TRIE: bpfnet_subnet_key -> bpfnet_subnet */
#define BPFNET_MAP_PEERS       bn_peers	     /* LPM_TRIE: bpfnet_subnet_key -> bpfnet_peer */
#define BPFNET_MAP_SUBNETS6    bn_subnets6   /* LPM_TRIE: bpfnet_subnet6_key -> bpfnet_subnet6 */
#define BPFNET_MAP_CONTAINERS6 bn_containers6 /* HASH: bpfnet_addr6 -> bpfnet_container */
#define BPFNET_MAP_NAT	       bn_nat	      /* LRU_HASH: bpfnet_nat_key -> bpfnet_nat_entry */
#define BPFNET_MAP_NAT_FRAGS   bn_nat_frags   /* LRU_HASH: bpfnet_nat_frag_key -> bpfnet_nat_frag */

#define BPFNET_XSTR(x) BPFNET_STR(x)
#define BPFNET_STR(x)  #x

/* Default capacities (the control plane may raise them before load). */
#define BPFNET_MAX_CONTAINERS	16384
/* bn_ports slots: ports with a lower ifindex take the inlined array lookup. */
#define BPFNET_PORT_SLOTS	65536
#define BPFNET_MAX_LINK_RULES	262144
#define BPFNET_MAX_PUBLISHED	16384
#define BPFNET_MAX_EXT_IFS	64
#define BPFNET_MAX_ALLOW_SRC	65536
#define BPFNET_MAX_ATTACH	16448 /* containers + ext interfaces */
#define BPFNET_MAX_FP_IFS	16448 /* containers + ext interfaces */
/* bn_networks slots: network 0 is the default bridge, 1.. the user-defined ones. */
#define BPFNET_MAX_NETWORKS	1024
/* bn_peers: the container subnets of every peer host together. */
#define BPFNET_MAX_PEER_SUBNETS 1024
/* bn_nat: two entries per eBPF NAT connection (one per direction). */
#define BPFNET_MAX_NAT_ENTRIES	131072
/* bn_nat_frags: fragmented replies in flight (each lives for its fragments). */
#define BPFNET_MAX_NAT_FRAGS	4096

/* ------------------------------------------------------------------------ */
/* Program kinds: one counter block per kind.                                */
/* ------------------------------------------------------------------------ */

enum bpfnet_program {
	BPFNET_PROG_PORT_TC = 0,  /* port program, tc clsact ingress of a bridge port */
	BPFNET_PROG_PORT_XDP = 1, /* port program, XDP on a bridge port               */
	BPFNET_PROG_EXT_XDP = 2,  /* ext program, XDP on an external interface        */
	BPFNET_PROG_MAX = 3,
};

/* ------------------------------------------------------------------------ */
/* Reasons. Every verdict carries exactly one; it indexes the counters.       */
/* Values are stable: they are read back by `bpfnet status` from pinned maps  */
/* written by another (possibly older) process. Passes < 32 <= drops.          */
/* Row numbers refer to the policy table in docs/policy.md.                  */
/* ------------------------------------------------------------------------ */

enum bpfnet_reason {
	BPFNET_REASON_NONE = 0,
	BPFNET_PASS_NON_IP = 1,	       /* row 1: neither IPv4 nor IPv6 (ARP, LLDP, ...)       */
	BPFNET_PASS_HOST = 2,	       /* row 2: container -> the bridge's own address        */
	BPFNET_PASS_ICC = 3,	       /* row 3: container -> container, icc=true              */
	BPFNET_PASS_LINK = 4,	       /* row 4: parent -> child on an exposed (proto, dport)  */
	BPFNET_PASS_LINK_REVERSE = 5,  /* row 5: child -> parent from an exposed (proto, sport)*/
	BPFNET_PASS_LINK_FRAGMENT = 6, /* non-first fragment between a linked pair            */
	BPFNET_PASS_OUTSIDE = 7,       /* row 7 (and row 2 for other host addresses)          */
	BPFNET_PASS_IPV6 = 8,	       /* IPv6 not addressed to a container's MAC             */
	BPFNET_PASS_PUBLISHED = 9,     /* row 8: published port, source allowed              */
	BPFNET_PASS_FORWARD = 10,      /* row 9: direct to a container, forward accept        */
	BPFNET_PASS_REPLY = 11,	       /* row 10: reply to a connection opened from inside    */
	BPFNET_PASS_LOCAL = 12,	       /* row 11: towards the host, not a published port      */
	BPFNET_PASS_FRAGMENT = 13,     /* ext: non-first fragment, judged by its first one    */
	BPFNET_PASS_RELATED = 14,      /* row 10: ICMP error about a connection opened inside */
	BPFNET_PASS_PEER = 15,	       /* row 12: a peer host's container -> a container      */
	BPFNET_DROP_ICC = 32,	       /* row 6: container -> container not allowed           */
	BPFNET_DROP_SOURCE = 33,       /* row 8/9: source not in the interface's allow-list   */
	BPFNET_DROP_FORWARD = 34,      /* row 9: direct to a container, forward policy drop   */
	BPFNET_DROP_MALFORMED = 35,    /* truncated or inconsistent L2/L3/L4 header           */
	BPFNET_DROP_UNKNOWN_PORT = 36, /* to a container from a port with no known container  */
	BPFNET_DROP_SPOOFED = 37,      /* source MAC/IPv4/ARP sender is not the port's own    */
	BPFNET_DROP_ENCAP = 38,	       /* more VLAN tags than the parser reads                */
	BPFNET_DROP_NETWORK = 39,      /* between two Docker networks (Docker's isolation)    */
	BPFNET_DROP_INTERNAL = 40,     /* out of, or into, an internal network               */
	BPFNET_DROP_PEER_SPOOFED = 41, /* row 13: a peer's subnet, not from the peer's route  */
	BPFNET_REASON_MAX = 48,
};

/* Every reason at or above this value is a drop. */
#define BPFNET_REASON_DROP_FIRST 32

#define BPFNET_COUNTER_INDEX(prog, reason) (((__u32)(prog)) * BPFNET_REASON_MAX + (__u32)(reason))
#define BPFNET_COUNTER_SLOTS		   (BPFNET_PROG_MAX * BPFNET_REASON_MAX)

/* ------------------------------------------------------------------------ */
/* bn_config: the single global policy record (ARRAY, key 0).                */
/* ------------------------------------------------------------------------ */

enum bpfnet_config_flags {
	BPFNET_CFG_ICC = 1u << 0,	     /* inter-container communication on (Docker --icc)  */
	BPFNET_CFG_FORWARD_ACCEPT = 1u << 1, /* forward policy accept (default drop)            */
	BPFNET_CFG_IP_FORWARD = 1u << 2,     /* net.ipv4.ip_forward managed on (informational)  */
	BPFNET_CFG_FAST_PATH = 1u << 3,	     /* deliver allowed traffic around the bridge/stack */
	BPFNET_CFG_OUTSIDE_CONTAINERS = 1u << 4, /* a container lies outside its network's subnet */
	BPFNET_CFG_NETWORKS = 1u << 5,	 /* user-defined networks exist: consult bn_subnets */
	BPFNET_CFG_PEERS = 1u << 6,	 /* peer hosts exist: consult bn_peers                */
	BPFNET_CFG_PEER_ALLOW = 1u << 7, /* peerPolicy allow: peers' containers skip icc    */
	BPFNET_CFG_IPV6 = 1u << 8,	 /* a network has IPv6: consult bn_subnets6          */
	BPFNET_CFG_NAT = 1u << 9,	 /* --nat ebpf: published ports translated in eBPF   */
	/* bn_nat may hold live connections: translate them (set with NAT, and
	 * after a switch to --nat netfilter until they are gone) */
	BPFNET_CFG_NAT_DRAIN = 1u << 10,
	BPFNET_CFG_LOADED = 1u << 31, /* set once the control plane has written a policy */
};

/* The default bridge's facts (network 0); every network's are in bn_networks. */
struct bpfnet_config {
	__u32 flags;	       /* enum bpfnet_config_flags                              */
	__be32 bridge_addr;    /* the bridge's own IPv4 address (row 2)                 */
	__be32 bridge_subnet;  /* bridge network address, already masked               */
	__be32 bridge_netmask; /* netmask; 0 means "no subnet known" (never matches)     */
	__u32 bridge_ifindex;  /* ifindex of the bridge, for status and the fast path    */
	__u32 generation;      /* bumped by the control plane on every policy change     */
	__u8 bridge_mac[6];    /* the bridge's own MAC: frames to it need no bn_macs lookup */
	__u16 pad;	       /* always 0                                              */
};
_Static_assert(sizeof(struct bpfnet_config) == 32, "bpfnet_config layout");

/* ------------------------------------------------------------------------ */
/* bn_containers: container IPv4 -> where it lives. Key: __be32 address.       */
/* ------------------------------------------------------------------------ */

struct bpfnet_container {
	__u32 port_ifindex; /* host-side veth enslaved to the bridge                  */
	__u8 mac[6];	    /* container's eth0 MAC                                    */
	__u16 network;	    /* its network's bn_networks slot (0: the default bridge)  */
};
_Static_assert(sizeof(struct bpfnet_container) == 12, "bpfnet_container layout");

/*
 * bn_ports (ifindex < BPFNET_PORT_SLOTS: an ARRAY, whose lookup the verifier
 * inlines) and bn_ports_high (the rest: a HASH; ifindexes only grow while
 * containers come and go): the container behind a bridge port. Written
 * by the control plane for every port it attached the port program to and
 * knows the container of; a port without an entry is an unknown port
 * (docs/verdicts.md). The port program checks every frame's source MAC, IPv4
 * source and ARP sender against it.
 */
struct bpfnet_port {
	__be32 addr;   /* the container's IPv4 address                          */
	__u8 mac[6];   /* the container's eth0 MAC                              */
	__u16 flags;   /* BPFNET_PORT_KNOWN when addr and mac are the container's */
	__u16 network; /* the bridge's network (bn_networks slot)              */
	__u16 pad;     /* always 0                                              */
};

/* Set on every entry whose container the control plane knows. An entry
 * without it (a port of a user-defined network's bridge whose container is
 * unknown) only says which network the port is on; an ARRAY slot always
 * exists, so a zeroed slot is an unknown port of the default bridge. */
#define BPFNET_PORT_KNOWN   0x1
/* Set on every entry the control plane writes (`network` is valid). */
#define BPFNET_PORT_WRITTEN 0x2
_Static_assert(sizeof(struct bpfnet_port) == 16, "bpfnet_port layout");

/*
 * bn_networks: one slot per bridge network (0: the default bridge, whose
 * facts bn_config also holds), read through a port's network on every frame.
 */
enum bpfnet_network_flags {
	BPFNET_NET_ICC = 1u << 0,      /* inter-container communication on this network     */
	BPFNET_NET_INTERNAL = 1u << 1, /* --internal: nothing in or out but the subnet      */
	BPFNET_NET_MASQ = 1u << 2,     /* masqueraded (netfilter's NAT); status only        */
	BPFNET_NET_KNOWN = 1u << 31,   /* written by the control plane                      */
};

struct bpfnet_network {
	__u32 flags;	      /* enum bpfnet_network_flags                          */
	__be32 bridge_addr;   /* the bridge's own IPv4 address (its gateway)        */
	__be32 subnet;	      /* already masked                                     */
	__be32 netmask;	      /* 0: no subnet known (never matches)                 */
	__u32 bridge_ifindex; /* the network's bridge                               */
	__u8 bridge_mac[6];   /* the bridge's own MAC                               */
	__u16 pad;	      /* always 0                                           */
	__u32 pad2;	      /* always 0                                           */
};
_Static_assert(sizeof(struct bpfnet_network) == 32, "bpfnet_network layout");

/*
 * bn_subnets: every user-defined network's IPv4 subnet (and the default
 * bridge's), so that a frame to an address of another Docker network is
 * known for one LPM lookup, however many networks there are. Consulted only
 * when BPFNET_CFG_NETWORKS is set. prefixlen is the CIDR prefix length.
 */
struct bpfnet_subnet_key {
	__u32 prefixlen;
	__be32 addr;
};
_Static_assert(sizeof(struct bpfnet_subnet_key) == 8, "bpfnet_subnet_key layout");

struct bpfnet_subnet {
	__u32 network;	    /* bn_networks slot                                     */
	__be32 bridge_addr; /* that network's gateway: a host address, not isolated */
};
_Static_assert(sizeof(struct bpfnet_subnet) == 8, "bpfnet_subnet layout");

/*
 * bn_peers: every peer host's container subnets (key: as bn_subnets'), each
 * with the peer's own address. The ext program admits traffic from such a
 * subnet to a local container only when it arrives the way this host routes
 * towards that address: the FIB's egress interface is the ingress one and its
 * neighbour MAC the frame's source (docs/verdicts.md, "Ext program").
 * Consulted only when BPFNET_CFG_PEERS is set.
 */
struct bpfnet_peer {
	__be32 addr; /* the peer host's own IPv4 address */
	__u32 flags; /* reserved, always 0 */
};
_Static_assert(sizeof(struct bpfnet_peer) == 8, "bpfnet_peer layout");

/*
 * bn_subnets6: every network's IPv6 subnet (dual stack: Docker's --ipv6), so
 * that an IPv6 destination is placed in its network for one LPM lookup, like
 * bn_subnets for IPv4. Consulted only when BPFNET_CFG_IPV6 is set. prefixlen
 * is the CIDR prefix length.
 */
struct bpfnet_subnet6_key {
	__u32 prefixlen;
	__u8 addr[16];
};
_Static_assert(sizeof(struct bpfnet_subnet6_key) == 20, "bpfnet_subnet6_key layout");

struct bpfnet_subnet6 {
	__u32 network;	      /* bn_networks slot                                 */
	__u8 bridge_addr[16]; /* the network's IPv6 gateway: a host address        */
};
_Static_assert(sizeof(struct bpfnet_subnet6) == 20, "bpfnet_subnet6 layout");

/*
 * bn_containers6: container IPv6 address -> where it lives (the same record
 * as bn_containers'). The port program admits a global IPv6 source from a
 * known port only when it is this map's entry with the port's MAC.
 */
struct bpfnet_addr6 {
	__u8 addr[16];
};
_Static_assert(sizeof(struct bpfnet_addr6) == 16, "bpfnet_addr6 layout");

/* bn_macs: container MAC -> IPv4, so IPv6 between containers can follow icc. */
struct bpfnet_mac_key {
	__u8 mac[6];
	__u16 pad; /* always 0 */
};
_Static_assert(sizeof(struct bpfnet_mac_key) == 8, "bpfnet_mac_key layout");

/*
 * bn_names: container IPv4 -> name, and a user-defined network's gateway (its
 * bridge's address, which no container has) -> the network's name; read by
 * `bpfnet status` and `bpfnet monitor` only.
 */
#define BPFNET_NAME_LEN 64
struct bpfnet_container_name {
	char name[BPFNET_NAME_LEN]; /* NUL-terminated unless exactly 64 bytes */
};
_Static_assert(sizeof(struct bpfnet_container_name) == 64, "bpfnet_container_name layout");

/* ------------------------------------------------------------------------ */
/* bn_links: Docker's legacy link rules, one hash entry per rule so that the   */
/* per-packet cost does not depend on how many links exist.                   */
/*                                                                            */
/*   FORWARD  (parent, child, proto, port)  parent -> child, dport == port    */
/*   REVERSE  (child, parent, proto, port)  child -> parent, sport == port    */
/*            (Docker's stateless reverse rule)                               */
/*   PAIR     (a, b, proto, 0)              a -> b non-first fragments; exists */
/*            when any FORWARD or REVERSE rule a -> b for proto exists         */
/* ------------------------------------------------------------------------ */

enum bpfnet_link_dir {
	BPFNET_LINK_FORWARD = 1,
	BPFNET_LINK_REVERSE = 2,
	BPFNET_LINK_PAIR = 3,
};

struct bpfnet_link_key {
	__be32 saddr;
	__be32 daddr;
	__be16 port; /* dport for FORWARD, sport for REVERSE, 0 for PAIR       */
	__u8 proto;  /* IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP               */
	__u8 dir;    /* enum bpfnet_link_dir                                   */
};
_Static_assert(sizeof(struct bpfnet_link_key) == 12, "bpfnet_link_key layout");

struct bpfnet_link_value {
	__u32 flags; /* reserved, 0 */
};
_Static_assert(sizeof(struct bpfnet_link_value) == 4, "bpfnet_link_value layout");

/* ------------------------------------------------------------------------ */
/* bn_published: published ports, matched by the ext program before DNAT.    */
/* host_addr 0 is a wildcard binding (Docker's 0.0.0.0).                      */
/* ------------------------------------------------------------------------ */

struct bpfnet_published_key {
	__be32 host_addr; /* 0 = any address                                        */
	__be16 host_port;
	__u8 proto;
	__u8 pad; /* always 0 */
};
_Static_assert(sizeof(struct bpfnet_published_key) == 8, "bpfnet_published_key layout");

struct bpfnet_published_value {
	__be32 container_addr;
	__be16 container_port;
	__u16 pad; /* always 0 */
};
_Static_assert(sizeof(struct bpfnet_published_value) == 8, "bpfnet_published_value layout");

/* ------------------------------------------------------------------------ */
/* bn_nat: eBPF NAT for published ports (--nat ebpf, docs/nat.md). Each       */
/* connection has two entries, keyed by the tuple as it arrives: the          */
/* original direction (outside -> host address:published port, seen by the   */
/* ext program) and the reply direction (container -> outside, seen by the   */
/* port program). Written by the programs; user space reads them and deletes */
/* expired ones.                                                             */
/* ------------------------------------------------------------------------ */

struct bpfnet_nat_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3]; /* always 0 */
};
_Static_assert(sizeof(struct bpfnet_nat_key) == 16, "bpfnet_nat_key layout");

enum bpfnet_nat_direction {
	BPFNET_NAT_ORIGINAL = 0, /* from the outside: the destination is rewritten */
	BPFNET_NAT_REPLY = 1,	 /* from the container: the source is rewritten     */
};

/* Connection state, kept on the original entry. */
enum bpfnet_nat_state {
	BPFNET_NAT_REPLIED = 1u << 0,	  /* the container answered                    */
	BPFNET_NAT_FIN_OUTSIDE = 1u << 1, /* TCP: the outside sent FIN                */
	BPFNET_NAT_FIN_INSIDE = 1u << 2,  /* TCP: the container sent FIN               */
	BPFNET_NAT_RST = 1u << 3,	  /* TCP: either side reset                      */
};

/*
 * Idle timeouts in seconds, conntrack's defaults: TCP syn_sent 120,
 * established 432000, fin_wait/time_wait 120, close 10; UDP unreplied 30,
 * replied (stream) 120. A connection is live while now - seen_ns is within
 * its timeout; the programs then ignore an expired entry, and user space
 * deletes it.
 */
#define BPFNET_NAT_TCP_SYN_SENT	   120
#define BPFNET_NAT_TCP_ESTABLISHED 432000
#define BPFNET_NAT_TCP_CLOSING	   120
#define BPFNET_NAT_TCP_CLOSE	   10
#define BPFNET_NAT_UDP_UNREPLIED   30
#define BPFNET_NAT_UDP_REPLIED	   120

struct bpfnet_nat_entry {
	__u64 created_ns;	     /* bpf_ktime_get_ns (CLOCK_MONOTONIC) of the first packet */
	__u64 seen_ns;		     /* original: the last packet either way; reply: its own */
	struct bpfnet_nat_key other; /* the other direction's key                             */
	__be32 addr;		     /* written: original: the container's address (dst);     */
	/* reply: the host address the outside reached (src)                          */
	__be16 port;	    /* written, with addr: the container's / published port */
	__u8 direction;	    /* enum bpfnet_nat_direction                             */
	__u8 state;	    /* enum bpfnet_nat_state (original entry)                */
	__u32 port_ifindex; /* the container's host-side veth                        */
	__u32 ext_ifindex;  /* where the connection came in                          */
	__u64 packets;	    /* this direction; updated without atomics (approximate) */
	__u64 bytes;
};
_Static_assert(sizeof(struct bpfnet_nat_entry) == 64, "bpfnet_nat_entry layout");

/*
 * bn_nat_frags: a container's UDP reply of an eBPF NAT connection that its
 * own stack fragmented. The first fragment carries the UDP header and is
 * translated by its connection's reply entry; it leaves here the source
 * address it was given, for the fragments after it, which carry no ports
 * and are matched by IP id. A local sender emits a datagram's fragments in
 * order, the first one first, so each must start where the one before it
 * ended (next_offset): nothing but the rest of that datagram leaves with
 * the host's address, and the last fragment (no MF) removes the entry. Live
 * for at most BPFNET_NAT_FRAG_TIMEOUT seconds (the kernel's ipfrag_time).
 */
struct bpfnet_nat_frag_key {
	__be32 saddr; /* the container */
	__be32 daddr; /* the outside peer */
	__be16 id;    /* the IPv4 identification */
	__u8 proto;
	__u8 pad; /* always 0 */
};
_Static_assert(sizeof(struct bpfnet_nat_frag_key) == 12, "bpfnet_nat_frag_key layout");

struct bpfnet_nat_frag {
	__u64 seen_ns;	    /* when the first fragment was translated */
	__be32 addr;	    /* the source address the first fragment was given */
	__u32 port_ifindex; /* the container's host-side veth: only its fragments */
	__u16 next_offset;  /* where the next fragment starts, in 8-byte units */
	__u16 pad[3];	    /* always 0 */
};
_Static_assert(sizeof(struct bpfnet_nat_frag) == 24, "bpfnet_nat_frag layout");

#define BPFNET_NAT_FRAG_TIMEOUT 30

/* ------------------------------------------------------------------------ */
/* bn_ext_ifs / bn_allow_src: external interfaces and their source lists.     */
/* ------------------------------------------------------------------------ */

enum bpfnet_ext_if_flags {
	BPFNET_EXT_ALLOWLIST = 1u << 0, /* the allow-list is non-empty: enforce it */
};

struct bpfnet_ext_if {
	__u32 flags; /* enum bpfnet_ext_if_flags */
};
_Static_assert(sizeof(struct bpfnet_ext_if) == 4, "bpfnet_ext_if layout");

/*
 * LPM key: the first 32 data bits are the ifindex (always fully matched), the
 * next up to 32 bits the source prefix. prefixlen = 32 + CIDR prefix length.
 */
struct bpfnet_allow_key {
	__u32 prefixlen;
	__u32 ifindex;
	__be32 addr;
};
_Static_assert(sizeof(struct bpfnet_allow_key) == 12, "bpfnet_allow_key layout");
#define BPFNET_ALLOW_PREFIX_BASE 32

/*
 * bn_allow_src6: the IPv6 entries of the same allow-lists (docker-proxy serves
 * published ports on [::] too). Same layout: ifindex, then up to 128 bits of
 * prefix; prefixlen = 32 + CIDR prefix length.
 */
struct bpfnet_allow6_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u8 addr[16];
};
_Static_assert(sizeof(struct bpfnet_allow6_key) == 24, "bpfnet_allow6_key layout");

/* ------------------------------------------------------------------------ */
/* bn_counters: per-CPU packets/bytes per (program, reason).                   */
/* ------------------------------------------------------------------------ */

struct bpfnet_counter {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct bpfnet_counter) == 16, "bpfnet_counter layout");

/* ------------------------------------------------------------------------ */
/* Fast path (docs/verdicts.md, "Fast path"): how an allowed packet was        */
/* delivered. Every packet a program passes adds 1 to exactly one event: a    */
/* hit (delivered straight to the destination) or the reason it took the      */
/* normal path (the bridge, or the host's routing). Dropped packets add none. */
/* Values are stable (read back from pinned maps, like the reasons).          */
/* ------------------------------------------------------------------------ */

enum bpfnet_fastpath_event {
	BPFNET_FP_NONE = 0,
	BPFNET_FP_HIT = 1,	/* delivered around the bridge (port) / the stack (ext)  */
	BPFNET_FP_DISABLED = 2, /* BPFNET_CFG_FAST_PATH is clear                          */
	BPFNET_FP_VERDICT = 3,	/* passed for a reason the fast path does not take        */
	BPFNET_FP_NOT_IPV4 = 4, /* IPv6 (icc-allowed by MAC): left to the bridge           */
	BPFNET_FP_VLAN = 5,	/* VLAN-tagged frame                                       */
	/*
	 * dst MAC is not the one this path delivers: port: the destination
	 * container's (a frame for the bridge's MAC is routed by the host); ext:
	 * the ingress interface's; or the FIB's neighbour is not the container's MAC
	 */
	BPFNET_FP_MAC = 6,
	BPFNET_FP_UNKNOWN_DEST = 7,  /* destination address is not a known container          */
	BPFNET_FP_SAME_PORT = 8,     /* destination port is the ingress port (hairpin)        */
	BPFNET_FP_NO_NAPI = 9,	     /* XDP: no NAPI arranged at the destination's peer       */
	BPFNET_FP_PARTIAL_CSUM = 10, /* XDP: frames arriving here may carry partial checksums */
	BPFNET_FP_IP_OPTIONS = 11,   /* routed: IPv4 options                                  */
	BPFNET_FP_FRAGMENT = 12,     /* routed: a fragment                                    */
	BPFNET_FP_TTL = 13,	     /* routed: TTL <= 1 (the stack answers with ICMP)        */
	BPFNET_FP_PROTOCOL = 14,     /* routed: not UDP (TCP/others need conntrack to see all)*/
	BPFNET_FP_CONNTRACK = 15,    /* routed: no conntrack entry opened from outside, or NAT */
	BPFNET_FP_FIB = 16,	     /* routed: FIB gave no route via the bridge (or too big)  */
	BPFNET_FP_FWD_DISABLED = 17, /* routed: forwarding is off on the ingress device       */
	BPFNET_FP_NO_NEIGH = 18,     /* routed: no neighbour entry for the container yet      */
	BPFNET_FP_REDIRECT = 19,     /* the redirect helper refused                           */
	BPFNET_FP_UNCONFIRMED = 20,  /* tc: the destination port is not in bn_fp_tx (gone, or  */
	/* not arranged): never redirect to a device that left  */
	/*
	 * cross-host: the sending container's network would judge the peer's
	 * replies by conntrack (icc off, peerPolicy icc), so the stack must see
	 * the flow leave
	 */
	BPFNET_FP_PEER_STATE = 21,
	/*
	 * eBPF NAT (published port): no connection of bn_nat this packet
	 * belongs to or may open (a TCP segment other than a SYN, a reply
	 * tuple another connection holds): netfilter's DNAT takes it
	 */
	BPFNET_FP_NAT_STATE = 22,
	BPFNET_FP_EVENT_MAX = 24,
};

#define BPFNET_FP_INDEX(prog, event) (((__u32)(prog)) * BPFNET_FP_EVENT_MAX + (__u32)(event))
#define BPFNET_FP_SLOTS		     (BPFNET_PROG_MAX * BPFNET_FP_EVENT_MAX)

/*
 * bn_fp_ifs: what bpfnet arranged (or found) on an interface for the XDP fast
 * paths, keyed by the interface's ifindex in bpfnet's namespace (a container's
 * host-side veth, or an ext_if). Written by user space only. The *_SET flags
 * record changes bpfnet made to the veth peer, so `unload` (even after a
 * crash) undoes exactly those.
 */
enum bpfnet_fp_if_flags {
	/* the peer has NAPI (GRO): XDP frames redirected to this interface arrive
	 * (also put into bn_fp_tx) */
	BPFNET_FP_IF_NAPI = 1u << 0,
	/* frames received here carry complete L4 checksums (not a veth whose peer
	 * offloads them): XDP may redirect them */
	BPFNET_FP_IF_FULL_CSUM = 1u << 1,
	BPFNET_FP_IF_SET_GRO = 1u << 8,	    /* bpfnet turned GRO on at the peer                 */
	BPFNET_FP_IF_SET_TX_CSUM = 1u << 9, /* bpfnet turned tx checksum offload off at the peer*/
};

struct bpfnet_fp_if {
	__u32 flags;	    /* enum bpfnet_fp_if_flags                               */
	__u32 peer_ifindex; /* the veth peer's ifindex in its own namespace, or 0    */
	__u8 mac[6];	    /* the interface's own MAC (ext: routed frames carry it)  */
	__u16 pad;	    /* always 0                                              */
};
_Static_assert(sizeof(struct bpfnet_fp_if) == 16, "bpfnet_fp_if layout");

/* ------------------------------------------------------------------------ */
/* bn_attach: where the control plane attached programs, so that `unload`     */
/* (possibly after a crash of `load`) detaches exactly what bpfnet attached.  */
/* Written by user space only.                                                */
/* ------------------------------------------------------------------------ */

struct bpfnet_attach_key {
	__u32 ifindex;
	__u32 program; /* enum bpfnet_program */
};
_Static_assert(sizeof(struct bpfnet_attach_key) == 8, "bpfnet_attach_key layout");

enum bpfnet_attach_flags {
	/* bpfnet created the interface's clsact qdisc: `unload` removes it again */
	BPFNET_ATTACH_CREATED_CLSACT = 1u << 0,
};

struct bpfnet_attach_value {
	__u32 prog_id; /* kernel program id that was attached */
	__u32 flags;   /* enum bpfnet_attach_flags */
};
_Static_assert(sizeof(struct bpfnet_attach_value) == 8, "bpfnet_attach_value layout");

/* ------------------------------------------------------------------------ */
/* bn_drops: drop events for `bpfnet monitor`. Sampled by a per-CPU rate     */
/* limit so that a flood of drops costs the ring (and the reader) a bounded   */
/* amount: at most BPFNET_DROP_EVENTS_PER_SEC events per CPU and second; the  */
/* rest are counted as suppressed. The counters stay exact either way.        */
/* ------------------------------------------------------------------------ */

#define BPFNET_DROP_RING_BYTES	   (256 * 1024)
#define BPFNET_DROP_EVENTS_PER_SEC 1024

struct bpfnet_drop_event {
	__u64 timestamp_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC)                */
	__u32 ifindex;	    /* where the packet came in                            */
	__u8 program;	    /* enum bpfnet_program                                 */
	__u8 reason;	    /* enum bpfnet_reason (a drop)                         */
	__u8 proto;	    /* IPv4 protocol, 0 when not IPv4                      */
	__u8 flags;	    /* BPFNET_DROP_F_*                                     */
	__be32 saddr;	    /* IPv4 only, else 0                                   */
	__be32 daddr;
	__be16 sport; /* when BPFNET_DROP_F_PORTS                            */
	__be16 dport;
	__u32 len; /* frame length                                        */
};
_Static_assert(sizeof(struct bpfnet_drop_event) == 32, "bpfnet_drop_event layout");

enum bpfnet_drop_event_flags {
	BPFNET_DROP_F_IPV4 = 1u << 0,	  /* saddr/daddr/proto are valid */
	BPFNET_DROP_F_PORTS = 1u << 1,	  /* sport/dport are valid       */
	BPFNET_DROP_F_FRAGMENT = 1u << 2, /* a non-first IPv4 fragment   */
};

/* Per-CPU rate limiter state for bn_drops. */
struct bpfnet_drop_rate {
	__u64 window_start_ns; /* start of the current one-second window */
	__u64 emitted;	       /* events written in this window          */
	__u64 suppressed;      /* events left out since the map was made */
	__u64 lost;	       /* events the full ring could not take    */
};
_Static_assert(sizeof(struct bpfnet_drop_rate) == 32, "bpfnet_drop_rate layout");

/* tc filter identity used for every port attachment (clsact ingress). */
#define BPFNET_TC_HANDLE   0xb9f
#define BPFNET_TC_PRIORITY 0xb9f

/* ------------------------------------------------------------------------ */
/* Helpers for the Swift side only.                                          */
/* ------------------------------------------------------------------------ */
#ifndef __bpf__
enum bpfnet_map_id {
	BPFNET_MAP_ID_CONFIG,
	BPFNET_MAP_ID_CONTAINERS,
	BPFNET_MAP_ID_MACS,
	BPFNET_MAP_ID_LINKS,
	BPFNET_MAP_ID_PUBLISHED,
	BPFNET_MAP_ID_EXT_IFS,
	BPFNET_MAP_ID_ALLOW_SRC,
	BPFNET_MAP_ID_COUNTERS,
	BPFNET_MAP_ID_NAMES,
	BPFNET_MAP_ID_ATTACH,
	BPFNET_MAP_ID_FP_COUNTERS,
	BPFNET_MAP_ID_FP_IFS,
	BPFNET_MAP_ID_FP_TX,
	BPFNET_MAP_ID_DROPS,
	BPFNET_MAP_ID_DROP_RATE,
	BPFNET_MAP_ID_PORTS,
	BPFNET_MAP_ID_PORTS_HIGH,
	BPFNET_MAP_ID_ALLOW_SRC6,
	BPFNET_MAP_ID_NETWORKS,
	BPFNET_MAP_ID_SUBNETS,
	BPFNET_MAP_ID_PEERS,
	BPFNET_MAP_ID_SUBNETS6,
	BPFNET_MAP_ID_CONTAINERS6,
	BPFNET_MAP_ID_NAT,
	BPFNET_MAP_ID_NAT_FRAGS,
	BPFNET_MAP_ID_COUNT,
};

static inline const char *bpfnet_map_name(enum bpfnet_map_id id)
{
	switch (id) {
	case BPFNET_MAP_ID_CONFIG:
		return BPFNET_XSTR(BPFNET_MAP_CONFIG);
	case BPFNET_MAP_ID_CONTAINERS:
		return BPFNET_XSTR(BPFNET_MAP_CONTAINERS);
	case BPFNET_MAP_ID_MACS:
		return BPFNET_XSTR(BPFNET_MAP_MACS);
	case BPFNET_MAP_ID_LINKS:
		return BPFNET_XSTR(BPFNET_MAP_LINKS);
	case BPFNET_MAP_ID_PUBLISHED:
		return BPFNET_XSTR(BPFNET_MAP_PUBLISHED);
	case BPFNET_MAP_ID_EXT_IFS:
		return BPFNET_XSTR(BPFNET_MAP_EXT_IFS);
	case BPFNET_MAP_ID_ALLOW_SRC:
		return BPFNET_XSTR(BPFNET_MAP_ALLOW_SRC);
	case BPFNET_MAP_ID_COUNTERS:
		return BPFNET_XSTR(BPFNET_MAP_COUNTERS);
	case BPFNET_MAP_ID_NAMES:
		return BPFNET_XSTR(BPFNET_MAP_NAMES);
	case BPFNET_MAP_ID_ATTACH:
		return BPFNET_XSTR(BPFNET_MAP_ATTACH);
	case BPFNET_MAP_ID_FP_COUNTERS:
		return BPFNET_XSTR(BPFNET_MAP_FP_COUNTERS);
	case BPFNET_MAP_ID_FP_IFS:
		return BPFNET_XSTR(BPFNET_MAP_FP_IFS);
	case BPFNET_MAP_ID_FP_TX:
		return BPFNET_XSTR(BPFNET_MAP_FP_TX);
	case BPFNET_MAP_ID_DROPS:
		return BPFNET_XSTR(BPFNET_MAP_DROPS);
	case BPFNET_MAP_ID_DROP_RATE:
		return BPFNET_XSTR(BPFNET_MAP_DROP_RATE);
	case BPFNET_MAP_ID_PORTS:
		return BPFNET_XSTR(BPFNET_MAP_PORTS);
	case BPFNET_MAP_ID_PORTS_HIGH:
		return BPFNET_XSTR(BPFNET_MAP_PORTS_HIGH);
	case BPFNET_MAP_ID_ALLOW_SRC6:
		return BPFNET_XSTR(BPFNET_MAP_ALLOW_SRC6);
	case BPFNET_MAP_ID_NETWORKS:
		return BPFNET_XSTR(BPFNET_MAP_NETWORKS);
	case BPFNET_MAP_ID_SUBNETS:
		return BPFNET_XSTR(BPFNET_MAP_SUBNETS);
	case BPFNET_MAP_ID_PEERS:
		return BPFNET_XSTR(BPFNET_MAP_PEERS);
	case BPFNET_MAP_ID_SUBNETS6:
		return BPFNET_XSTR(BPFNET_MAP_SUBNETS6);
	case BPFNET_MAP_ID_CONTAINERS6:
		return BPFNET_XSTR(BPFNET_MAP_CONTAINERS6);
	case BPFNET_MAP_ID_NAT:
		return BPFNET_XSTR(BPFNET_MAP_NAT);
	case BPFNET_MAP_ID_NAT_FRAGS:
		return BPFNET_XSTR(BPFNET_MAP_NAT_FRAGS);
	case BPFNET_MAP_ID_COUNT:
		break;
	}
	return "";
}
#endif /* !__bpf__ */

#endif /* BPFNET_SHARED_H */
