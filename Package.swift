// swift-tools-version: 6.1
//
// bpfnet: Docker's default-bridge container policy enforced with eBPF.
// Targets, their dependencies and what each owns: docs/architecture.md.

import PackageDescription

let package = Package(
    name: "bpfnet",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "bpfnet", targets: ["bpfnet"]),
        .executable(name: "bpfnet-probe", targets: ["bpfnet-probe"]),
        .library(name: "BPF", targets: ["BPF"]),
        .library(name: "BPFNetCore", targets: ["BPFNetCore"]),
        // For the fuzz targets (Fuzz/, a package of its own).
        .library(name: "DockerWatcher", targets: ["DockerWatcher"]),
        // The packet-rate benchmark engine; a product so that the separate
        // Benchmarks/ package (control-plane figures) can use its fixtures.
        .library(name: "BPFNetBench", targets: ["BPFNetBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // Already resolved through async-http-client; named so DockerWatcher may import NIOCore.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // Prometheus text exposition (its registry; swift-metrics comes with it).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // libbpf from the system (Debian: libbpf-dev), nothing else.
        .systemLibrary(
            name: "CLibBPF",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev", "zlib1g-dev"])]
        ),
        // bpf/include/bpfnet_shared.h exposed to Swift; the module map points at it.
        .target(name: "BPFNetShared"),
        // bpf/include/bench_shared.h exposed to Swift: the maps of the bench's
        // own programs (bpf/bench_gen.bpf.c, bpf/bench_sink.bpf.c), for BPFNetBench.
        .target(name: "BPFNetBenchShared"),
        // setns(2) and the kernel's rtnetlink headers for LinuxNet, nothing else.
        .systemLibrary(name: "CLinuxNet"),
        // Network namespaces (entered only on threads started for it),
        // rtnetlink (links, namespace ids) and running commands (argv, many at
        // once in one poll loop); Glibc and swift-system only, knows nothing of ours.
        .target(
            name: "LinuxNet",
            dependencies: ["CLinuxNet", .product(name: "SystemPackage", package: "swift-system")]
        ),

        // Compiles bpf/*.bpf.c with clang -target bpf and embeds the objects.
        .executableTarget(name: "BPFEmbed"),
        .plugin(
            name: "BPFCompiler",
            capability: .buildTool(),
            dependencies: ["BPFEmbed"]
        ),
        .target(name: "BPFObjects", plugins: ["BPFCompiler"]),

        // Generic libbpf layer; knows nothing about Docker. Re-exports LinuxNet:
        // attaching in another namespace is done inside NetworkNamespace.run.
        .target(
            name: "BPF",
            dependencies: [
                "CLibBPF", "LinuxNet",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Pure Swift policy model, reference verdicts, compiler, reconciler.
        .target(
            name: "BPFNetCore",
            dependencies: [
                "BPFNetShared",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // Test tooling over the model, kept out of the library that ships (as
        // swift-nio keeps NIOTestUtils): the frame builder, the seeded frame
        // fuzzer and the reconciler's transition check. The reference verdict
        // and the frame parser stay in BPFNetCore: they are the specification.
        // Used by the tests and the bench.
        .target(name: "BPFNetTestSupport", dependencies: ["BPFNetCore"]),
        // Backends behind one protocol: eBPF (and the fallbacks later), in-memory.
        .target(
            name: "BPFNetDataplane",
            dependencies: [
                "BPF", "BPFNetCore", "BPFNetShared", "BPFObjects", "LinuxNet",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Network namespaces, veths, bridges and probes: the demo host, the
        // end-to-end tests and the benchmarks build their topologies with it.
        .target(
            name: "NetLab",
            dependencies: [
                "BPFNetCore", "LinuxNet",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Docker Engine API client (unix socket) and its translation into the model.
        .target(
            name: "DockerWatcher",
            dependencies: [
                "BPFNetCore", "LinuxNet",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Prometheus metrics: the dataplane's status and the agent's measurements
        // in the text exposition format, and the tiny HTTP server of
        // `bpfnet run --metrics-address` (SwiftNIO's HTTP/1 codec).
        .target(
            name: "BPFNetMetrics",
            dependencies: [
                "BPFNetCore",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // `bpfnet run`: follows a Docker daemon (DockerWatcher) and keeps a
        // Dataplane in step with its containers and links.
        .target(
            name: "BPFNetAgent",
            dependencies: [
                "BPFNetCore", "BPFNetDataplane", "BPFNetMetrics", "DockerWatcher", "LinuxNet",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // The demo host: a Docker-like host in namespaces, its policy and the
        // verdict the policy table predicts for each probe. Drives `bpfnet
        // demo` and the end-to-end suites.
        .target(
            name: "DemoHost",
            dependencies: ["BPFNetCore", "LinuxNet", "NetLab"]
        ),
        // `bpfnet bench`: one topology per variant (bridge, Docker's iptables
        // rules, bpfnet), an XDP live-frames generator and a counting receiver
        // (bpf/bench_gen.bpf.c, bpf/bench_sink.bpf.c), interleaved rounds on
        // one pinned thread, the table, the JSON and the SVG chart.
        .target(
            name: "BPFNetBench",
            dependencies: [
                "BPF", "BPFNetCore", "BPFNetShared", "BPFNetDataplane", "BPFObjects", "CLibBPF", "LinuxNet", "NetLab",
                "BPFNetBenchShared", "BPFNetTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // `bpfnet install` and `uninstall`: the binaries, the systemd unit and
        // Docker's daemon.json, and back (Foundation only; no root needed to test).
        .target(name: "BPFNetInstall"),
        .executableTarget(
            name: "bpfnet",
            dependencies: [
                "BPF", "BPFNetCore", "BPFNetDataplane", "NetLab", "DemoHost", "BPFNetAgent", "BPFNetMetrics",
                "DockerWatcher", "BPFNetBench", "BPFNetInstall", "LinuxNet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Tiny TCP/UDP/ICMP prober run inside namespaces (fixed source ports).
        .executableTarget(name: "bpfnet-probe"),
        // A full resync of 1,000 containers with links through the agent
        // (fake Docker; in-memory and, as root, the real pinned dataplane).
        // A plain executable, apart from the package-benchmark suite.
        .executableTarget(
            name: "AgentResyncBenchmark",
            dependencies: [
                "BPFNetAgent", "BPFNetCore", "BPFNetDataplane", "BPFNetMetrics", "BPFNetShared", "DockerWatcher",
                "LinuxNet", "NetLab",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/agent-resync",
            exclude: ["README.md"]
        ),

        .testTarget(
            name: "BPFNetCoreTests",
            dependencies: ["BPFNetCore", "BPFNetShared", "BPFNetTestSupport"],
            resources: [.copy("Fixtures")]
        ),
        // The generic libbpf layer against the real kernel (root) and its
        // pure parts (no root); uses the selftest object (bpf/selftest.bpf.c).
        .testTarget(
            name: "BPFTests",
            dependencies: [
                "BPF", "BPFObjects", "CLibBPF",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .testTarget(
            name: "BPFTestRunTests",
            dependencies: ["BPF", "BPFNetCore", "BPFNetShared", "BPFObjects", "BPFNetDataplane", "BPFNetTestSupport"]
        ),
        // Namespaces, probes and the cleanup safety net (root; skipped otherwise).
        .testTarget(
            name: "NetLabTests",
            dependencies: ["NetLab", "BPFNetCore", "LinuxNet"]
        ),
        // The exposition of a made-up status and of the agent's metrics, the
        // HTTP handler on an embedded channel, `promtool check metrics` (no root).
        .testTarget(
            name: "MetricsTests",
            dependencies: [
                "BPFNetMetrics", "BPFNetCore", "LinuxNet",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "DockerWatcherTests",
            dependencies: ["DockerWatcher", "BPFNetCore", "DockerTestSupport", "LinuxNet", "NetLab"],
            resources: [.copy("Fixtures")]
        ),
        // The agent's state machine against a scripted Docker and the
        // in-memory dataplane (no root).
        .testTarget(
            name: "AgentTests",
            dependencies: [
                "BPFNetAgent", "BPFNetCore", "BPFNetDataplane", "BPFNetShared", "DockerWatcher", "LinuxNet",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `bpfnet run` against a real dockerd, compared with dockerd's own
        // iptables rules probe by probe (root).
        .testTarget(
            name: "DockerEndToEndTests",
            dependencies: ["BPFNetCore", "BPFNetTestSupport", "DockerTestSupport", "LinuxNet", "NetLab"]
        ),
        // A private dockerd in a network namespace, for the two real-Docker suites.
        .target(name: "DockerTestSupport", dependencies: ["LinuxNet", "NetLab"], path: "Tests/DockerTestSupport"),
        // The bench engine: option parsing, workload, rules, JSON schema, chart
        // (no root); a smoke run of every variant (root; skipped otherwise).
        .testTarget(
            name: "BenchTests",
            dependencies: ["BPFNetBench", "BPFNetCore", "BPFNetTestSupport", "LinuxNet", "NetLab"]
        ),
        // install and uninstall on scratch directories: the unit (systemd-analyze
        // verify), daemon.json merged and put back, nothing left behind (no root).
        .testTarget(name: "InstallTests", dependencies: ["BPFNetInstall"]),
        // The repository stands alone: every file its docs, help texts, comments
        // and scripts refer to exists (no root; runs the built bpfnet for the help).
        .testTarget(name: "RepositoryTests", dependencies: ["LinuxNet"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "BPFNetCore", "BPFNetDataplane", "BPFNetTestSupport", "LinuxNet", "NetLab", "DemoHost",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
    ]
)
