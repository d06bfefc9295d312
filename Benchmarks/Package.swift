// swift-tools-version: 6.1
//
// Control-plane benchmarks of bpfnet (package-benchmark): how long it takes
// to compile a policy and to write it into bpfnet's maps, and how fast maps
// take updates. A package of its own, depending on bpfnet by path, so that
// `swift build` and CI of the main package never build package-benchmark.
//
//     cd Benchmarks && swift package benchmark            # all (map writes need root)
//     swift package benchmark --filter "compile.*"        # no root needed
//
// Packet rates are not measured here: that is `bpfnet bench` (docs/bench.md).

import Foundation
import PackageDescription

// A path dependency's identity is its directory's name ("bpfnet" in a clone
// named so, something else in a worktree): take it from where we are.
let bpfnetIdentity = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "bpfnet-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(path: ".."),
        // MallocInterposer: malloc counting without jemalloc (not packaged here).
        .package(url: "https://github.com/ordo-one/package-benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "ControlPlane",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "BPFNetBench", package: bpfnetIdentity),
                .product(name: "BPFNetCore", package: bpfnetIdentity),
            ],
            path: "Benchmarks/ControlPlane",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "package-benchmark")
            ]
        )
    ]
)
