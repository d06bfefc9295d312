// SPDX-License-Identifier: Apache-2.0
//
// Builds the scenario's host in network namespaces, loads bpfnet on it the
// way an operator does (the `bpfnet` binary, run in the host namespace with a
// policy file), and measures the reachability matrix with real traffic.

import BPFNetCore
import Foundation
import LinuxNet
import NetLab

/// One cell of the reachability matrix.
public struct MatrixEntry: Codable, Sendable, Hashable {
    public var from: String
    public var to: String
    public var proto: String
    public var port: UInt16?
    /// "allowed" or "blocked", as the policy table says.
    public var expected: String
    /// "allowed" or "blocked" (or "error" when the probe could not run), as measured.
    public var observed: String
    public var sourcePort: UInt16?
    public var size: Int?
    public var rows: String
    /// The reason (docs/reasons.md) the policy drops it with, when expected
    /// blocked: "icc", "network", "source", "forward".
    public var reason: String?
    public var detail: String

    public var matches: Bool { expected == observed }

    /// "web:80/tcp", "host:icmp".
    public var destination: String { port.map { "\(to):\($0)/\(proto)" } ?? "\(to):\(proto)" }

    /// "client", "web (sport 80)", "client (4000 B)".
    public var source: String {
        var text = from
        if let sourcePort { text += " sport \(sourcePort)" }
        if let size { text += " \(size)B" }
        return text
    }
}

/// A demo host with bpfnet loaded on it.
public final class DemoLab {
    public let topology: Topology
    public let bpfnet: String
    public let pinPath: String
    private let workDirectory: String
    private let probeRunner: ProbeRunner
    private var closed = false
    /// Whether the host has the scenario's user-defined networks (and their containers).
    public let userNetworks: Bool

    /// Builds the topology and starts the servers. `bpfnet` is the binary to
    /// load with (default: the one next to the running executable); without
    /// `userNetworks` the host has the default bridge's containers alone.
    public init(bpfnet: String? = nil, userNetworks: Bool = true) throws {
        self.userNetworks = userNetworks
        let binary = try bpfnet ?? Self.locateBPFNet()
        self.bpfnet = binary
        probeRunner = try ProbeRunner()
        var template = Array("/tmp/bpfnet-demo-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw NetLabError.invalidSpec(
                "cannot create a temporary directory under /tmp: \(String(cString: strerror(errno)))")
        }
        workDirectory = String(cString: made)
        // Not a bpffs: bpfnet mounts a private one there and unmounts it on unload.
        pinPath = workDirectory + "/pins"
        do {
            topology = try Topology.build(Scenario.topology(userNetworks: userNetworks))
            for role in Scenario.members(userNetworks: userNetworks).map(\.name) + ["ext"] {
                try topology.startServer(in: role, tcp: Scenario.tcpPorts, udp: Scenario.udpPorts, probe: probeRunner)
            }
        } catch {
            try? FileManager.default.removeItem(atPath: workDirectory)
            throw error
        }
    }

    deinit { close() }

    public static func locateBPFNet() throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["BPFNET_BINARY"] { return explicit }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var candidates = [URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()]
        candidates.append(executable)
        for candidate in candidates {
            if candidate.lastPathComponent == "bpfnet" { return candidate.path }
            let sibling = candidate.deletingLastPathComponent().appendingPathComponent("bpfnet")
            if FileManager.default.isExecutableFile(atPath: sibling.path) { return sibling.path }
        }
        throw NetLabError.invalidSpec("cannot find the bpfnet binary next to \(executable.path); set BPFNET_BINARY")
    }

    /// Runs `bpfnet ARGS --pin-path PIN` in the host namespace; throws with its stderr on failure.
    @discardableResult
    public func bpfnet(_ arguments: [String]) throws -> String {
        try topology.run(
            in: TopologySpec.hostRole, [bpfnet] + arguments + ["--pin-path", pinPath],
            timeout: .seconds(60)
        ).stdout
    }

    /// The policy file the last `load` wrote.
    public var policyFile: String { workDirectory + "/policy.yaml" }

    /// Writes the policy file for `settings` and runs `bpfnet load` with it.
    /// - Parameter allowSourcesIPv6: IPv6 prefixes added to the external
    ///   interface's allow-list (with `settings.allowList` only).
    public func load(
        _ settings: PolicySettings, portHook: PortHook = .tc, allowSourcesIPv6: [IPv6CIDR] = [],
        extraArguments: [String] = []
    ) throws {
        var policy = Scenario.policy(settings, portHook: portHook, userNetworks: userNetworks)
        if settings.allowList {
            for index in policy.extInterfaces.indices {
                policy.extInterfaces[index].allowSourcesIPv6 = allowSourcesIPv6
            }
        }
        try load(policy, extraArguments: extraArguments)
    }

    /// Writes `policy` (the scenario's, changed by the caller) and runs `bpfnet load` with it.
    public func load(_ policy: Policy, extraArguments: [String] = []) throws {
        try Self.yaml(policy).write(toFile: policyFile, atomically: true, encoding: .utf8)
        try bpfnet(["load", "--config", policyFile] + extraArguments)
    }

    /// `bpfnet status --json`, decoded.
    public func status() throws -> DataplaneStatus {
        let output = try bpfnet(["status", "--json"])
        return try JSONDecoder().decode(DataplaneStatus.self, from: Data(output.utf8))
    }

    public func unload() throws {
        try bpfnet(["unload"])
    }

    /// Every scenario probe under `settings`, measured.
    public func measure(_ settings: PolicySettings) throws -> [MatrixEntry] {
        let scenarioProbes = Scenario.probes(userNetworks: userNetworks)
        let probes = try scenarioProbes.map { entry throws(NetLabError) in
            try topology.probe(
                from: entry.from, to: entry.to, entry.kind, sourcePort: entry.sourcePort,
                sourceAddress: entry.sourceAddress, size: entry.size,
                label: "\(entry.fromLabel) → \(entry.toLabel)")
        }
        // Probes that share a fixed source port in one namespace would collide; run in waves.
        let results = probeRunner.run(probes)
        return zip(scenarioProbes, results).map { entry, result in
            MatrixEntry(
                from: entry.fromLabel, to: entry.toLabel, proto: entry.proto, port: entry.port,
                expected: entry.expected(settings) ? "allowed" : "blocked",
                observed: result.reachability.rawValue,
                sourcePort: entry.sourcePort, size: entry.size, rows: entry.rows,
                reason: entry.expected(settings) ? nil : entry.dropReason(settings), detail: result.detail)
        }
    }

    /// The reasons whose drop counters rose by less than the number of probes
    /// the policy drops with them (each sends at least one packet that is
    /// dropped): "network: 2 packets counted, 4 probes blocked". `counted` is
    /// reason → packets counted while `entries` were measured, every program.
    public static func undercountedReasons(_ entries: [MatrixEntry], counted: [String: UInt64]) -> [String] {
        var blocked: [String: Int] = [:]
        for entry in entries where entry.expected == "blocked" {
            if let reason = entry.reason { blocked[reason, default: 0] += 1 }
        }
        return blocked.sorted { $0.key < $1.key }.compactMap { reason, probes in
            let packets = counted[reason, default: 0]
            return packets >= UInt64(probes)
                ? nil : "\(reason): \(packets) packets counted, \(probes) probes blocked"
        }
    }

    /// Unloads (best effort) and removes every namespace, mount and file made.
    public func close() {
        guard !closed else { return }
        closed = true
        _ = try? unload()
        // If unload failed, the private bpffs may still be mounted.
        _ = try? ProcessRunner.run(Command(["umount", "-l", pinPath], timeout: .seconds(10)))
        _ = topology.teardown()
        try? FileManager.default.removeItem(atPath: workDirectory)
    }

    /// The policy as a YAML file (JSON is YAML; the keys are the policy file's).
    public static func yaml(_ policy: Policy) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(policy), as: UTF8.self) + "\n"
    }
}
