// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ext.bpf.c — the ext program: XDP on every external interface, rows 8-11 of
 * the policy table. It sees packets before DNAT, so a published port is
 * matched on the host address and host port. Replies to connections opened
 * from this host's side (containers, masqueraded or not) are recognised with
 * the kernel's own conntrack table (bpf_xdp_ct_lookup, kernel >= 6.0) and are
 * never dropped; conntrack is consulted only when a packet would be dropped.
 *
 * License: GPL-2.0-only OR BSD-2-Clause (conntrack kfuncs need GPL-compatible).
 */
#include "ctx.h"
#include "counters.h"
#include "policy.h"

#define BPF_F_CURRENT_NETNS (-1)
#define IP_CT_DIR_REPLY 1

/* The kernel's struct bpf_ct_opts in its original 12-byte form (NF_BPF_CT_OPTS_OLD_SZ). */
struct bpf_ct_opts___local {
	__s32 netns_id;
	__s32 error;
	__u8  l4proto;
	__u8  dir;      /* out: direction of the tuple that matched */
	__u8  reserved[2];
};

/*
 * Opaque here; only ever passed back to the kernel. It must be a struct, not
 * a forward declaration: libbpf matches kfunc prototypes by kind, and a
 * FWD never matches the kernel's STRUCT.
 */
struct nf_conn {
	__u32 opaque;
};

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *tuple,
					 __u32 tuple__sz, struct bpf_ct_opts___local *opts,
					 __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

/* Row 10: is this packet the reply direction of a tracked connection? */
static __always_inline int is_conntrack_reply(struct xdp_md *xdp, const struct parsed *p)
{
	struct bpf_ct_opts___local opts = {
		.netns_id = BPF_F_CURRENT_NETNS,
		.l4proto = p->proto,
	};
	struct bpf_sock_tuple tuple = {};
	struct nf_conn *ct;
	int reply;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return 0; /* the conntrack kfuncs only take TCP and UDP */
	tuple.ipv4.saddr = p->saddr;
	tuple.ipv4.daddr = p->daddr;
	tuple.ipv4.sport = p->sport;
	tuple.ipv4.dport = p->dport;

	ct = bpf_xdp_ct_lookup(xdp, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	if (!ct)
		return 0;
	reply = opts.dir == IP_CT_DIR_REPLY;
	bpf_ct_release(ct);
	return reply;
}

static __always_inline enum bpfnet_reason ext_policy(struct xdp_md *xdp, const struct pkt *pkt)
{
	const struct bpfnet_config *cfg;
	struct parsed p = {};
	enum parse_kind kind;
	enum bpfnet_reason reason;

	kind = parse_frame(pkt, &p);
	if (kind == PARSE_MALFORMED)
		return BPFNET_DROP_MALFORMED;
	if (kind == PARSE_OTHER)
		return BPFNET_PASS_NON_IP;
	if (kind == PARSE_IPV6)
		return BPFNET_PASS_IPV6; /* the default bridge is IPv4-only */
	if (p.nonfirst_fragment) {
		/* Conntrack's defrag reassembles before routing or local delivery,
		 * and a datagram whose first fragment was dropped never completes. */
		return BPFNET_PASS_FRAGMENT;
	}

	cfg = config_or_empty();
	reason = ext_provisional(cfg, &p, xdp->ingress_ifindex);
	if (reason >= BPFNET_REASON_DROP_FIRST && p.has_ports && is_conntrack_reply(xdp, &p))
		return BPFNET_PASS_REPLY;
	return reason;
}

SEC("xdp")
int bpfnet_ext_xdp(struct xdp_md *xdp)
{
	struct pkt pkt;

	pkt_from_xdp(xdp, &pkt);
	return xdp_action(account(BPFNET_PROG_EXT_XDP, ext_policy(xdp, &pkt), &pkt));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
