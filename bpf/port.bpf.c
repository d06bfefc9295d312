// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "bpfnet_shared.h"

SEC("tc")
int bpfnet_port_tc(struct __sk_buff *skb) { return 0; }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
