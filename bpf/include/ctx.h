/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ctx.h — the context shim: one policy source serves tc (cls_bpf, direct
 * action) and XDP. The policy code only ever sees a `struct pkt` (start, end,
 * full length); each entry point builds one from its context and maps the
 * policy's pass/drop back to its own action codes (TC_ACT_* / XDP_*).
 *
 * BPF only: include from *.bpf.c, never from user space.
 */
#ifndef BPFNET_CTX_H
#define BPFNET_CTX_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/*
 * Longest header chain the policy reads: Ethernet 14 + two VLAN tags 8 +
 * IPv4 with options 60 + TCP 20 = 102 bytes. tc programs pull this much into
 * the linear area first, so a header that exists in the frame is also
 * reachable through data/data_end (a GSO or paged skb may have a short head).
 */
#define BPFNET_PARSE_DEPTH 128

struct pkt {
	void *data;	/* first byte of the Ethernet header           */
	void *data_end; /* end of the bytes the program may read       */
	__u32 len;	/* full frame length (skb->len for tc)         */
};

static __always_inline void pkt_from_skb(struct __sk_buff *skb, struct pkt *pkt)
{
	__u32 want = skb->len < BPFNET_PARSE_DEPTH ? skb->len : BPFNET_PARSE_DEPTH;

	if ((long)skb->data_end - (long)skb->data < (long)want) {
		/* Failure leaves the head as it was; parsing then sees a
		 * truncated frame and the verdict is the defined malformed one. */
		bpf_skb_pull_data(skb, want);
	}
	pkt->data = (void *)(long)skb->data;
	pkt->data_end = (void *)(long)skb->data_end;
	pkt->len = skb->len;
}

static __always_inline void pkt_from_xdp(struct xdp_md *xdp, struct pkt *pkt)
{
	pkt->data = (void *)(long)xdp->data;
	pkt->data_end = (void *)(long)xdp->data_end;
	pkt->len = (__u32)((long)pkt->data_end - (long)pkt->data);
}

/* Verdicts as the policy code returns them. */
enum pkt_action {
	PKT_PASS = 0,
	PKT_DROP = 1,
};

#endif /* BPFNET_CTX_H */
