/* SPDX-License-Identifier: Apache-2.0 */
/* The libbpf API (Debian's libbpf-dev 1.1.2) and the kernel UAPI constants it takes. */
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
