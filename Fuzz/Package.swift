// swift-tools-version: 6.1
//
// Fuzz targets for bpfnet's inputs: the policy file, Docker's JSON and the
// frame parser (docs/verification.md, "Fuzzing"). A package of its own,
// depending on bpfnet by path, so that the ordinary build never links
// libFuzzer. Build it with AddressSanitizer and coverage for every module
// (scripts/fuzz.sh does):
//
//     swift build --package-path Fuzz --sanitize=address \
//         -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table
//
// `--sanitize=fuzzer` cannot be used: it compiles every executable of the
// graph as a library for libFuzzer's main, bpfnet's build-tool plugin
// (BPFEmbed) included. Here only this target links libFuzzer.

import Foundation
import PackageDescription

// A path dependency's identity is its directory's name ("bpfnet" in a clone
// named so, something else in a worktree): take it from where we are.
let bpfnetIdentity = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "bpfnet-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .target(name: "CFuzzer"),
        .executableTarget(
            name: "bpfnet-fuzz",
            dependencies: [
                "CFuzzer",
                .product(name: "BPFNetCore", package: bpfnetIdentity),
                .product(name: "DockerWatcher", package: bpfnetIdentity),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library", "-sanitize=fuzzer"])],
            linkerSettings: [.unsafeFlags(["-sanitize=fuzzer"])]
        ),
    ]
)
