// SPDX-License-Identifier: Apache-2.0
//
// Control-plane figures: what it costs to turn a policy with 1,000 / 10,000
// links or allowed sources into map contents (PolicyCompiler), to work out
// the writes (the reconciler), and to write them into bpfnet's real pinned
// maps; and how many single map updates per second the maps take.
//
// The policies are the ones `bpfnet bench` loads (ControlPlaneFixture): the
// bench host's containers, N Docker links with one exposed port each (4 map
// entries per link), icc=false. Writing into real maps needs root (CAP_BPF,
// and CAP_SYS_ADMIN for the private bpffs the maps are pinned on); without
// root those benchmarks are left out and the pure ones still run.

import BPFNetBench
import BPFNetCore
import Benchmark
import Foundation

/// The loaded maps of one benchmark, made in its setup hook.
final class MapsHolder: @unchecked Sendable {
    var maps: PrivateDataplaneMaps?

    func open() throws { maps = try PrivateDataplaneMaps() }

    func close() {
        maps?.close()
        maps = nil
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .peakMemoryResident],
        warmupIterations: 1,
        maxDuration: .seconds(10),
        maxIterations: 30)

    // MARK: Pure: no kernel involved.

    // The sizes measured, each as links or as allowed sources.
    let fixtures = [1000, 10000].flatMap { count in
        [
            (label: "\(count) links", policy: ControlPlaneFixture.policy(links: count)),
            (label: "\(count) allowed sources", policy: ControlPlaneFixture.policy(links: 0, allowedSources: count)),
        ]
    }

    for (label, policy) in fixtures {
        Benchmark("compile \(label)") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(try ControlPlaneFixture.compile(policy))
            }
        }
    }
    for links in [1000, 10000] {
        let desired = try? ControlPlaneFixture.compile(ControlPlaneFixture.policy(links: links))
        Benchmark("reconcile \(links) links from empty (writes only)") { benchmark in
            guard let desired else { throw BenchError.runtime("the fixture policy does not compile") }
            for _ in benchmark.scaledIterations {
                blackHole(MapState.empty.changes(to: desired))
            }
        }
    }

    // MARK: Real maps (root).

    guard geteuid() == 0 else {
        FileHandle.standardError.write(
            Data(
                "ControlPlane: not root — leaving out the benchmarks that write bpfnet's pinned maps\n".utf8))
        return
    }

    for (label, policy) in fixtures {
        let holder = MapsHolder()
        let desired = try? ControlPlaneFixture.compile(policy)
        // Everything `bpfnet load` does to the maps: read them back, diff, write.
        Benchmark("apply \(label) to pinned maps") { benchmark in
            guard let maps = holder.maps, let desired else { throw BenchError.runtime("setup failed") }
            try maps.clear()
            benchmark.startMeasurement()
            try maps.apply(desired)
            benchmark.stopMeasurement()
        } setup: {
            try holder.open()
        } teardown: {
            holder.close()
        }
    }

    for links in [1000, 10000] {
        let desired = try? ControlPlaneFixture.compile(ControlPlaneFixture.policy(links: links))
        // A policy change on a full host: one more link; reading back and
        // diffing the whole state dominates.
        let grown = try? ControlPlaneFixture.compile(ControlPlaneFixture.policy(links: links + 1))
        let holder = MapsHolder()
        Benchmark("re-apply \(links) links with one added") { benchmark in
            guard let maps = holder.maps, let desired, let grown else { throw BenchError.runtime("setup failed") }
            try maps.apply(desired)
            benchmark.startMeasurement()
            try maps.apply(grown)
            benchmark.stopMeasurement()
        } setup: {
            try holder.open()
        } teardown: {
            holder.close()
        }
    }

    // Single upserts into bn_links, one bpf(2) call each: throughput is
    // map updates per second (in thousands: the scaling factor is kilo).
    let rules = (try? ControlPlaneFixture.compile(ControlPlaneFixture.policy(links: 10000)))?.links.sorted() ?? []
    let holder = MapsHolder()
    Benchmark(
        "bn_links update rate",
        configuration: .init(metrics: [.throughput, .wallClock, .cpuTotal], scalingFactor: .kilo)
    ) { benchmark in
        guard let maps = holder.maps, !rules.isEmpty else { throw BenchError.runtime("setup failed") }
        for index in benchmark.scaledIterations {
            try maps.write([.upsert(.link(rules[index % rules.count]))])
        }
    } setup: {
        try holder.open()
    } teardown: {
        holder.close()
    }
}
