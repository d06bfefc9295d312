// SPDX-License-Identifier: Apache-2.0
//
// Shared by the end-to-end suites of every backend: run the DemoHost scenario
// (a Docker-like host in network namespaces, real TCP/UDP/ICMP probes) with
// `bpfnet load --backend X` and assert that every cell of the reachability
// matrix is what the policy table says.

import BPFNetCore
import DemoHost
import Foundation
import NetLab
import XCTest

/// Root-only suites skip without root, unless BPFNET_REQUIRE_ROOT_TESTS=1
/// (CI), where running without root is a failure.
func requireRootForEndToEnd(
    _ what: String = "network namespaces, bpffs, nft and iptables",
    file: StaticString = #filePath, line: UInt = #line
) throws {
    guard geteuid() != 0 else { return }
    if ProcessInfo.processInfo.environment["BPFNET_REQUIRE_ROOT_TESTS"] == "1" {
        XCTFail("requires root: \(what) (BPFNET_REQUIRE_ROOT_TESTS=1 makes this a failure)", file: file, line: line)
    }
    throw XCTSkip("requires root: \(what)")
}

/// The settings the fallbacks' suites run (icc × allow-list × forward policy).
let scenarioSettings: [PolicySettings] = [
    PolicySettings(icc: true, allowList: true, forwardPolicy: .drop),
    PolicySettings(icc: false, allowList: true, forwardPolicy: .drop),
    PolicySettings(icc: false, allowList: false, forwardPolicy: .accept),
    PolicySettings(icc: true, allowList: false, forwardPolicy: .accept),
    PolicySettings(icc: false, allowList: true, forwardPolicy: .accept),
]

/// Loads `settings` with `bpfnet load --backend BACKEND` on `lab` (a fresh
/// lab when nil), measures every scenario probe and asserts each cell matches
/// the policy. Returns the matrix.
@discardableResult
func runScenario(
    backend: String, settings: PolicySettings, portHook: PortHook = .tc, lab: DemoLab? = nil,
    file: StaticString = #filePath, line: UInt = #line
) throws -> [MatrixEntry] {
    let ownLab = lab == nil ? try DemoLab() : nil
    defer { ownLab?.close() }
    let lab = lab ?? ownLab!
    try lab.load(settings, portHook: portHook, extraArguments: ["--backend", backend])
    let before = try lab.status().counters
    let entries = try lab.measure(settings)
    assertDropsCounted(
        entries, backend: backend, before: before, after: try lab.status().counters, "\(backend), \(settings)",
        file: file, line: line)
    let wrong = entries.filter { !$0.matches }
    XCTAssert(
        wrong.isEmpty,
        "\(backend), \(settings): \(wrong.count) of \(entries.count) cells differ from the policy:\n"
            + wrong.map {
                "  \($0.source) → \($0.destination) (rows \($0.rows)): expected \($0.expected), "
                    + "observed \($0.observed) — \($0.detail)"
            }.joined(separator: "\n"), file: file, line: line)
    return entries
}

/// A blocked probe that timed out proves no drop: every reason the
/// scenario expects its blocked probes dropped with must have counted at
/// least one packet per probe while they ran (counters are deltas, as they
/// outlive reloads). The nftables backend counts a frame between networks
/// under `icc` when the sender's network has icc off (docs/fallback-networks.md),
/// so there `network` and `icc` are one bucket.
func assertDropsCounted(
    _ entries: [MatrixEntry], backend: String, before: [String: UInt64], after: [String: UInt64],
    _ context: String, file: StaticString = #filePath, line: UInt = #line
) {
    let bucket: (String) -> String = { backend == "nftables" && $0 == "network" ? "icc" : $0 }
    var expected: [String: Int] = [:]
    for entry in entries where entry.expected == "blocked" {
        if let reason = entry.reason { expected[bucket(reason), default: 0] += 1 }
    }
    var bucketed: [String: UInt64] = [:]
    for (reason, packets) in after { bucketed[bucket(reason), default: 0] += packets }
    var bucketedBefore: [String: UInt64] = [:]
    for (reason, packets) in before { bucketedBefore[bucket(reason), default: 0] += packets }
    assertDropsCounted(expected, before: bucketedBefore, after: bucketed, context, file: file, line: line)
}

/// Each reason's counter rose by at least as many packets as `expected`
/// says probes were blocked with it (each sends at least one packet).
func assertDropsCounted(
    _ expected: [String: Int], before: [String: UInt64], after: [String: UInt64], _ context: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    let missing = expected.sorted { $0.key < $1.key }.compactMap { reason, probes -> String? in
        let counted = after[reason, default: 0] - min(after[reason, default: 0], before[reason, default: 0])
        return counted >= UInt64(probes) ? nil : "\(reason): \(counted) packets counted, \(probes) probes blocked"
    }
    XCTAssert(
        missing.isEmpty, "\(context): blocked probes not counted: \(missing.joined(separator: "; "))", file: file,
        line: line)
}

/// What each backend left in the lab's host namespace.
struct BackendObjects: CustomStringConvertible {
    /// bpf: pinned maps under the lab's pin path.
    var pins: [String]
    /// "family name" of every nftables table.
    var nftTables: Set<String>
    /// bpfnet's and Docker's chains in `iptables-save` (both tables), "table chain";
    /// in `ip6tables-save` as "ip6 table chain" (and "legacy …" for the legacy variants); in
    /// `ebtables-save` as "eb table chain".
    var iptablesChains: Set<String>
    /// Interfaces with an XDP program, and bridge ports with a tc ingress filter.
    var attachments: Set<String>
    /// "clsact DEV" for every interface with a clsact qdisc (the lab's host
    /// namespace has none of its own: each is the eBPF backend's).
    var qdiscs: Set<String>

    var description: String {
        "pins \(pins), nft tables \(nftTables.sorted()), iptables chains \(iptablesChains.sorted()), "
            + "attachments \(attachments.sorted()), qdiscs \(qdiscs.sorted())"
    }

    static func read(_ lab: DemoLab) throws -> BackendObjects {
        let host = TopologySpec.hostRole
        let pins = (try? FileManager.default.contentsOfDirectory(atPath: lab.pinPath))?.sorted() ?? []
        let tables = try lab.topology.run(in: host, ["nft", "list", "tables"]).stdout
            .split(separator: "\n").map { $0.replacingOccurrences(of: "table ", with: "") }
        var chains = Set<String>()
        for (variant, label) in [
            ("iptables-save", ""), ("iptables-legacy-save", "legacy "), ("ip6tables-save", "ip6 "),
            ("ip6tables-legacy-save", "legacy ip6 "), ("ebtables-save", "eb "),
        ] {
            var text = try lab.topology.run(in: host, [variant]).stdout
            // ebtables-save ends a table without COMMIT, which IPTablesSave waits for.
            if variant == "ebtables-save" { text += "\nCOMMIT\n" }
            let save = IPTablesSave(parsing: text)
            for (name, table) in save.tables {
                for chain in table.chains.map(\.name)
                where chain.hasPrefix("BPFNET-") || chain.hasPrefix("DOCKER") {
                    chains.insert("\(label)\(name) \(chain)")
                }
            }
        }
        var attachments = Set<String>()
        let links = try lab.topology.run(in: host, ["ip", "-j", "-d", "link", "show"]).stdout
        if let list = try JSONSerialization.jsonObject(with: Data(links.utf8)) as? [[String: Any]] {
            for link in list {
                guard let name = link["ifname"] as? String else { continue }
                if link["xdp"] != nil { attachments.insert("xdp \(name)") }
                if link["master"] as? String == "docker0" {
                    let filters = try lab.topology.run(in: host, ["tc", "filter", "show", "dev", name, "ingress"])
                        .stdout
                    if !filters.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                        attachments.insert("tc \(name)")
                    }
                }
            }
        }
        return BackendObjects(
            pins: pins, nftTables: Set(tables.map { String($0) }), iptablesChains: chains,
            attachments: attachments, qdiscs: try clsactQdiscs(in: lab.topology, role: host))
    }

    /// "clsact DEV" for every interface of `role`'s namespace with a clsact qdisc.
    static func clsactQdiscs(in topology: Topology, role: String) throws -> Set<String> {
        let json = try topology.run(in: role, ["tc", "-j", "qdisc", "show"]).stdout
        guard let list = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] else { return [] }
        return Set(
            list.compactMap { qdisc in
                guard qdisc["kind"] as? String == "clsact", let device = qdisc["dev"] as? String else { return nil }
                return "clsact \(device)"
            })
    }

    var hasBPF: Bool { !pins.isEmpty || !attachments.isEmpty || !qdiscs.isEmpty }
    var hasNFTablesFilter: Bool { nftTables.contains("bridge bpfnet") }
    var hasIPTables: Bool { !iptablesChains.isEmpty }
}

extension DataplaneStatus {
    /// The policy part only: what every backend must report alike.
    var policyOnly: DataplaneStatus {
        var copy = self
        copy.backend = ""
        copy.generation = 0
        copy.loaded = true
        copy.counters = [:]
        copy.programCounters = [:]
        copy.unusedBackends = nil
        copy.bridgePorts = nil
        // Only the eBPF backend reads its networks back (docs/cli.md).
        copy.networks = nil
        // Delivery (the eBPF fast path) and the agent are not policy.
        copy.fastPathEnabled = nil
        copy.fastPath = nil
        copy.agent = nil
        copy.lastSyncLatencyMs = nil
        // Who translates (nat auto: ebpf on the eBPF backend, netfilter on the
        // others) and eBPF NAT's live connections are delivery, not policy.
        copy.nat = nil
        copy.natConnections = nil
        copy.connections = nil
        // How the ext program is attached is the eBPF backend's alone.
        for index in copy.extInterfaces.indices { copy.extInterfaces[index].xdpMode = nil }
        return copy
    }
}
