// SPDX-License-Identifier: Apache-2.0
//
// The verifier resolves a map lookup only when the program names one map at
// the call: it then inlines ARRAY lookups and calls the map type's own lookup
// for the rest. When clang merges two lookups on different maps into one call
// on a map chosen at run time, the program falls back to the generic
// bpf_map_lookup_elem helper. That happened once to bn_ports (array) and
// bn_ports_high (hash) and cost every frame ~14 ns (docs/bench.md, "Micro");
// nothing else showed it. This test reads the programs as the kernel runs
// them (`bpftool prog dump xlated`) and fails on any such call.

import BPF
import XCTest

final class InlinedLookupTests: TestRunTestCase {
    func testEveryMapLookupIsResolvedByTheVerifier() throws {
        let programs: [(String, BPFProgram)] = [
            ("bpfnet_port_tc", rig.program(for: .portTC)), ("bpfnet_port_xdp", rig.program(for: .portXDP)),
            ("bpfnet_ext_xdp", rig.program(for: .ext(ingress: 0))),
        ]
        for (name, program) in programs {
            let xlated = try runCommand(["bpftool", "prog", "dump", "xlated", "id", String(program.id)])
            let calls = xlated.split(separator: "\n").filter { $0.contains(" call ") }
            // Sanity: the dump resolves helper names, so the check below can see them.
            XCTAssertTrue(
                calls.contains { $0.contains("__htab_map_lookup_elem") },
                "\(name): no resolved hash lookup in\n\(xlated)")
            let generic = calls.filter { $0.contains("call bpf_map_lookup_elem") }
            XCTAssertTrue(
                generic.isEmpty,
                "\(name): \(generic.count) map lookup(s) on a map chosen at run time (not inlined):\n"
                    + generic.joined(separator: "\n"))
        }
    }
}
