// SPDX-License-Identifier: Apache-2.0
//
// A Docker host in network namespaces of the test's own (docs/testing.md):
//
//   namespace D ("docker host"): dockerd (started with nsenter --net, its
//     docker0 and containers live here), ext0 198.51.100.1/24, and — in the
//     bpfnet phase — `bpfnet run` with a private pin path;
//   namespace X ("outside"): ext1 with 198.51.100.2 (the allowed source) and
//     198.51.100.3 (not allowed), a route to the bridge subnet via D for the
//     direct-routing probes, and a probe server on 7777.
//
// dockerd's data root outlives the namespaces (the busybox image is imported
// once); <data-root>/network is wiped before every daemon with other flags.
// Everything is removed in `destroy()`, also after a failure, and only
// processes this helper started (by pid, or whose command line names its own
// temporary directory) are ever signalled.

import BPFNetCore
import DockerTestSupport
import Foundation
import LinuxNet
import NetLab
import XCTest

#if canImport(Glibc)
import Glibc
#endif

struct LabFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum LabAddresses {
    static let host = IPv4Address(198, 51, 100, 1)
    static let allowed = IPv4Address(198, 51, 100, 2)
    static let other = IPv4Address(198, 51, 100, 3)
    /// dockerd --bip: inside the namespace, away from anything on the machine.
    static let bridge = "10.47.0.1/24"
    static let bridgeSubnet = "10.47.0.0/24"
    static let externalPort: UInt16 = 7777
}

/// Runs a tool and returns its standard output; throws with its standard error.
@discardableResult
func sh(
    _ arguments: [String], input: String? = nil, environment: [String: String] = [:],
    timeout: Duration = .seconds(60)
) throws -> String {
    let result = try ProcessRunner.run(Command(arguments, input: input, timeout: timeout, environment: environment))
    guard result.succeeded else {
        throw LabFailure(
            "`\(result.command)` failed (\(result.status)\(result.timedOut ? ", timed out" : "")): "
                + (result.stderr.isEmpty ? result.stdout : result.stderr))
    }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The two namespaces and the veth between them.
final class LabNamespaces {
    let docker: NetworkNamespace
    let outside: NetworkNamespace
    private var outsideServer: BackgroundProcess?

    init(tag: String, probe: ProbeRunner) throws {
        docker = NetworkNamespace(unopenedNamed: "bpfnet-dkd-\(tag)")
        outside = NetworkNamespace(unopenedNamed: "bpfnet-dkx-\(tag)")
        do {
            try sh(["ip", "netns", "add", docker.name])
            try sh(["ip", "netns", "add", outside.name])
            try sh(
                ["ip", "-n", docker.name, "-batch", "-"],
                input: """
                    link set lo up
                    link add ext0 type veth peer name ext1 netns \(outside.name)
                    addr add \(LabAddresses.host)/24 dev ext0
                    link set ext0 up

                    """)
            try sh(
                ["ip", "-n", outside.name, "-batch", "-"],
                input: """
                    link set lo up
                    addr add \(LabAddresses.allowed)/24 dev ext1
                    addr add \(LabAddresses.other)/24 dev ext1
                    link set ext1 up
                    route add \(LabAddresses.bridgeSubnet) via \(LabAddresses.host)

                    """)
            // The outside sends complete checksums, as a wire does (a veth peer
            // offloads them, and the eBPF NAT takes no frame that may be partial).
            try sh(outside.nsenter(["ethtool", "-K", "ext1", "tx", "off"]))
            let server = try BackgroundProcess(
                Command(
                    outside.nsenter(
                        probe.serveArguments(
                            tcp: [LabAddresses.externalPort], udp: [LabAddresses.externalPort], name: "outside"))))
            _ = try server.waitForLine(prefix: "ready", timeout: .seconds(10))
            outsideServer = server
        } catch {
            destroy()
            throw error
        }
    }

    func destroy() {
        outsideServer?.stop()
        outsideServer = nil
        for namespace in [docker, outside] where namespace.exists {
            _ = try? ProcessRunner.run(Command(["ip", "netns", "del", namespace.name]))
        }
    }
}

/// The scenario's containers by name (a reference, so closures and helpers share it).
final class LabContainers {
    private(set) var byName: [String: LabContainer] = [:]

    subscript(name: String) -> LabContainer? {
        get { byName[name] }
        set { byName[name] = newValue }
    }

    var names: [String] { byName.keys.sorted() }
    var all: [LabContainer] { Array(byName.values) }

    func removeAll() { byName = [:] }
}

/// A container of the scenario with its probe server running in its namespace.
final class LabContainer {
    let name: String
    let tcp: [UInt16]
    let udp: [UInt16]
    private(set) var pid: Int32 = 0
    private(set) var ip = IPv4Address(0)
    private var server: BackgroundProcess?

    init(name: String, tcp: [UInt16], udp: [UInt16]) {
        self.name = name
        self.tcp = tcp
        self.udp = udp
    }

    var namespace: NetworkNamespace { NetworkNamespace(unopenedPath: "/proc/\(pid)/ns/net", name: name) }

    /// Reads pid and address from Docker and (re)starts the probe server inside.
    func refresh(_ dockerd: PrivateDockerd, probe: ProbeRunner) throws {
        let fields = try dockerd.docker([
            "inspect", "-f", "{{.State.Pid}} {{.NetworkSettings.Networks.bridge.IPAddress}}", name,
        ])
        .split(separator: " ")
        guard fields.count == 2, let pid = Int32(fields[0]), pid > 0, let ip = IPv4Address(fields[1]) else {
            throw LabFailure("docker inspect \(name): unexpected '\(fields.joined(separator: " "))'")
        }
        self.pid = pid
        self.ip = ip
        stopServer()
        let arguments = probe.serveArguments(tcp: tcp, udp: udp, name: name)
        let server = try BackgroundProcess(Command(namespace.nsenter(arguments)))
        _ = try server.waitForLine(prefix: "ready", timeout: .seconds(10))
        self.server = server
    }

    func stopServer() {
        server?.stop()
        server = nil
    }
}

/// A blocked probe that timed out proves no drop: each reason (docs/reasons.md)
/// must have counted at least one packet per probe blocked with it while the
/// probes ran. `blocked`: reason → the probes' labels; `before`/`after`:
/// `status` counters around the probes.
func assertDropsCountedByReason(
    _ blocked: [String: [String]], before: [String: UInt64], after: [String: UInt64], _ context: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    for (reason, labels) in blocked.sorted(by: { $0.key < $1.key }) {
        let rose = after[reason, default: 0] - min(after[reason, default: 0], before[reason, default: 0])
        XCTAssertGreaterThanOrEqual(
            rose, UInt64(labels.count),
            "\(context): `\(reason)` counted \(rose) packets for \(labels.count) blocked probes: "
                + labels.joined(separator: "; "), file: file, line: line)
    }
}

extension DockerNetworksEndToEndTests {
    /// `assertDropsCounted` for probes that each name the reason they are blocked with.
    func assertDropsCounted(
        _ probes: [(expected: Reachability, counted: String?, label: String)], before: [String: UInt64]?,
        bpfnet: BPFNetCLI, file: StaticString = #filePath, line: UInt = #line
    ) {
        guard let before, let after = try? bpfnet.status().counters else {
            return XCTFail("status could not be read around the probes", file: file, line: line)
        }
        var blocked: [String: [String]] = [:]
        for probe in probes where probe.expected == .blocked {
            blocked[probe.counted ?? "(no reason named)", default: []].append(probe.label)
        }
        assertDropsCountedByReason(blocked, before: before, after: after, "bpfnet run", file: file, line: line)
    }
}
