// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import BPFNetCore
import BPFNetDataplane
import Foundation
import SystemPackage

struct Monitor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print dropped packets as they happen, with the reason in Docker's terms.",
        discussion: """
            Reads the eBPF dataplane's drop events (sampled: at most 1024 per CPU and second; the \
            counters in `bpfnet status` stay exact). Runs until interrupted, or until --count events. \
            The reasons are listed in docs/reasons.md.
            """)

    @Option(help: "Stop after this many events.")
    var count: Int?

    @Option(help: "Stop after this many seconds.")
    var seconds: Double?

    @Flag(help: "One JSON object per line.")
    var json = false

    @OptionGroup var pins: PinPathOption
    var pinPath: String { pins.pinPath }

    func run() throws {
        try requireRoot("monitor")
        let dataplane = BPFDataplane(pinPath: FilePath(pinPath))
        guard dataplane.isLoaded else {
            throw DataplaneError.notFound(
                "monitor: nothing is loaded at \(pinPath) — run `bpfnet load --config FILE` first")
        }
        let names = try dataplane.status().containers.reduce(into: [String: String]()) { $0[$1.ip] = $1.name }
        let monitor = try DropMonitor(pinPath: FilePath(pinPath))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let deadline = seconds.map { Date().addingTimeInterval($0) }
        var seen = 0
        while count.map({ seen < $0 }) ?? true, deadline.map({ Date() < $0 }) ?? true {
            for event in try monitor.next(timeoutMilliseconds: 200) {
                let interface = HostSystem.interfaceName(event.ifindex) ?? "if\(event.ifindex)"
                // Unbuffered, line by line: the reader may be a pipe (`| grep`).
                let line =
                    json
                    ? String(decoding: try encoder.encode(event), as: UTF8.self)
                    : "\(event.program) on \(interface): \(event.flow { names[$0] }) dropped: "
                        + event.explanation(interface: interface)
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
                seen += 1
                if let count, seen >= count { break }
            }
        }
        let missed = try monitor.missed()
        if missed.suppressed + missed.lost > 0 && !json {
            print("(\(missed.suppressed) events left out by the rate limit, \(missed.lost) lost to a full ring)")
        }
    }
}
