// SPDX-License-Identifier: Apache-2.0
//
// The maps of the bench's own programs (bpf/bench_gen.bpf.c, bpf/bench_sink.bpf.c)
// by the names bpf/include/bench_shared.h gives them, so that each name is
// written once, as bpfnet's own maps are by bpfnet_shared.h.

import BPFNetBenchShared

extension bench_map_id {
    /// `bench_map_name()`: the map's name in its object ("bn_gen_flows").
    var name: String { String(cString: bench_map_name(self)) }
}
