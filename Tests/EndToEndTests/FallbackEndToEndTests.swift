// SPDX-License-Identifier: Apache-2.0
//
// The netfilter fallbacks end to end (root): the DemoHost scenario through
// `bpfnet load --backend nftables|iptables` for icc × allow-list × forward
// policy, with the same expected matrix as the eBPF backend; switching
// between backends; status per backend; failures that must keep the
// previous state. Everything runs in the lab's namespaces (nft and iptables
// are only ever run inside them).

import BPFNetCore
import DemoHost
import Foundation
import LinuxNet
import NetLab
import XCTest

final class FallbackEndToEndTests: XCTestCase {
    private var lab: DemoLab!

    override func setUpWithError() throws {
        try requireRootForEndToEnd()
        lab = try DemoLab()
    }

    override func tearDown() {
        lab?.close()
        lab = nil
    }

    private var host: String { TopologySpec.hostRole }

    private func sysctl(_ key: String) throws -> String {
        try lab.topology.run(in: host, ["sysctl", "-n", key]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: the scenario per backend

    func testNFTablesScenario() throws {
        try checkScenario(backend: "nftables")
        // Bridged traffic never needed br_netfilter: the lab's host keeps it off.
        XCTAssertEqual(try sysctl("net.bridge.bridge-nf-call-iptables"), "0")
    }

    func testIPTablesScenario() throws {
        try checkScenario(backend: "iptables")
    }

    /// The same with iptables-legacy (x_tables), as on a host without nf_tables.
    func testIPTablesLegacyScenario() throws {
        setenv("BPFNET_IPTABLES", "legacy", 1)
        defer { unsetenv("BPFNET_IPTABLES") }
        for settings in [
            PolicySettings(icc: false, allowList: true, forwardPolicy: .drop),
            PolicySettings(icc: true, allowList: false, forwardPolicy: .accept),
        ] {
            try runScenario(backend: "iptables", settings: settings, lab: lab)
            XCTAssertEqual(try lab.status().backend, "iptables")
            let objects = try BackendObjects.read(lab)
            XCTAssertTrue(objects.iptablesChains.contains("legacy filter BPFNET-STATE"), "\(objects)")
            XCTAssertTrue(objects.iptablesChains.contains("legacy ip6 filter BPFNET-EXT"), "\(objects)")
            XCTAssertFalse(objects.iptablesChains.contains("filter BPFNET-STATE"), "\(objects)")
            XCTAssertFalse(objects.iptablesChains.contains("ip6 filter BPFNET-STATE"), "\(objects)")
        }
        try lab.unload()
        let objects = try BackendObjects.read(lab)
        XCTAssertFalse(objects.hasIPTables, "\(objects)")
    }

    /// An operator's DOCKER-USER rules are evaluated first, as with Docker,
    /// and outlive bpfnet.
    func testDockerUserRulesKeepWorking() throws {
        let lone = Scenario.address("lone")
        try lab.topology.run(in: host, ["iptables", "-N", "DOCKER-USER"])
        try lab.topology.run(in: host, ["iptables", "-A", "DOCKER-USER", "-s", "\(lone)/32", "-j", "DROP"])
        let settings = PolicySettings(icc: false)
        try lab.load(settings, extraArguments: ["--backend", "iptables"])
        let entries = try lab.measure(settings)
        for entry in entries {
            if entry.from == "lone" && entry.to.hasPrefix("ext") {
                XCTAssertEqual(entry.observed, "blocked", "DOCKER-USER drops lone's forwarded traffic: \(entry)")
            } else if entry.from != "lone" {
                XCTAssertTrue(entry.matches, "\(entry)")
            }
        }
        let save = try lab.topology.run(in: host, ["iptables-save", "-t", "filter"]).stdout
        let forward = save.split(separator: "\n").filter { $0.hasPrefix("-A FORWARD") }
        XCTAssertEqual(forward.first.map(String.init), "-A FORWARD -m comment --comment bpfnet -j DOCKER-USER")
        try lab.unload()
        let after = try lab.topology.run(in: host, ["iptables-save", "-t", "filter"]).stdout
        XCTAssertTrue(after.contains("-A DOCKER-USER -s \(lone)/32 -j DROP"), after)
        XCTAssertFalse(after.contains("bpfnet"), after)
    }

    private func checkScenario(backend: String) throws {
        for (index, settings) in scenarioSettings.enumerated() {
            if backend == "iptables" && index > 0 {
                // br_netfilter stays on while a network has icc off (backend), so conntrack
                // remembers bridged flows, and Docker's `-o docker0 --ctstate ESTABLISHED -j ACCEPT`
                // lets a flow icc=true allowed go on under icc=false (as under Docker): a fresh host.
                lab.close()
                lab = try DemoLab()
            }
            try runScenario(backend: backend, settings: settings, lab: lab)
            let status = try lab.status()
            XCTAssertEqual(status.backend, backend)
            XCTAssertEqual(status.icc, settings.icc)
            XCTAssertEqual(status.forwardPolicy, settings.forwardPolicy.rawValue)
            XCTAssertEqual(status.containers.count, Scenario.members.count)
            XCTAssertEqual(
                status.links.map { "\($0.parent)->\($0.child) \($0.ports)" },
                ["client->web [\"80/tcp\", \"53/udp\"]", "app->db [\"5432/tcp\"]"])
            XCTAssertEqual(status.published.count, 2)
            XCTAssertEqual(
                status.extInterfaces.first?.allowSources, settings.allowList ? ["\(Scenario.allowedSource)/32"] : [])
            // The probes must have shown up in the counters named after the eBPF reasons (a load
            // rewrites the netfilter backends' rules, so their counters start at 0 with it).
            if !settings.icc {
                XCTAssertGreaterThan(status.counters["icc", default: 0], 0, "\(backend) \(settings): icc drops")
                XCTAssertGreaterThan(status.counters["link", default: 0], 0, "\(backend) \(settings): link passes")
                XCTAssertGreaterThan(status.counters["link-reverse", default: 0], 0, "\(backend) \(settings)")
            }
            if settings.allowList {
                XCTAssertGreaterThan(status.counters["source", default: 0], 0, "\(backend) \(settings): source drops")
            }
            if settings.forwardPolicy == .drop {
                XCTAssertGreaterThan(status.counters["forward", default: 0], 0, "\(backend) \(settings): forward drops")
            }
            if backend == "iptables" {
                // bridge-nf-call-ip(6)tables only while icc is off on some bridge (the lab's host starts
                // with them off; the demo's backend network has icc off).
                let iccEverywhere = settings.icc && Scenario.networks.allSatisfy(\.icc)
                for key in ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"] {
                    XCTAssertEqual(try sysctl(key), iccEverywhere ? "0" : "1", "\(key) \(settings)")
                }
            }
        }
        try lab.unload()
        XCTAssertEqual(try sysctl("net.bridge.bridge-nf-call-iptables"), "0")
        XCTAssertEqual(try sysctl("net.bridge.bridge-nf-call-ip6tables"), "0")
        let objects = try BackendObjects.read(lab)
        XCTAssertFalse(objects.hasBPF || objects.hasNFTablesFilter || objects.hasIPTables, "\(objects)")
        XCTAssertFalse(objects.nftTables.contains("ip bpfnet"), "\(objects)")
    }

    // MARK: switching

    /// bpf → nftables → iptables → bpf → nftables → unload: after each load
    /// only that backend's objects exist, the scenario still matches, and
    /// every backend reports the same policy.
    func testSwitchingBackendsLeavesNothingBehind() throws {
        let settings = PolicySettings(icc: false, allowList: true, forwardPolicy: .drop)
        var statuses: [String: DataplaneStatus] = [:]
        for backend in ["bpf", "nftables", "iptables", "bpf", "iptables", "nftables"] {
            try runScenario(backend: backend, settings: settings, lab: lab)
            let objects = try BackendObjects.read(lab)
            switch backend {
            case "bpf":
                XCTAssertTrue(objects.hasBPF, "\(objects)")
                XCTAssertEqual(
                    Set(objects.nftTables.filter { $0.hasSuffix(" bpfnet") }), ["ip bpfnet"],
                    "only the NAT table: \(objects)")
                XCTAssertFalse(objects.hasIPTables, "\(objects)")
            case "nftables":
                XCTAssertFalse(objects.hasBPF, "\(objects)")
                XCTAssertEqual(
                    Set(objects.nftTables.filter { $0.hasSuffix(" bpfnet") }),
                    ["ip bpfnet", "bridge bpfnet", "ip6 bpfnet"],
                    "\(objects)")
                XCTAssertFalse(objects.hasIPTables, "\(objects)")
            default:
                XCTAssertFalse(objects.hasBPF, "\(objects)")
                XCTAssertTrue(objects.nftTables.filter { $0.hasSuffix(" bpfnet") }.isEmpty, "\(objects)")
                XCTAssertTrue(objects.iptablesChains.contains("filter BPFNET-STATE"), "\(objects)")
                XCTAssertEqual(
                    Set(objects.iptablesChains.filter { $0.hasPrefix("ip6 ") }),
                    Set(["ip6 filter BPFNET-STATE", "ip6 filter BPFNET-EXT", "ip6 filter BPFNET-SRC-ext0"]),
                    "\(objects)")
                XCTAssertTrue(objects.iptablesChains.contains("eb filter BPFNET-PORTS"), "\(objects)")
            }
            let status = try lab.status()
            XCTAssertEqual(status.backend, backend)
            statuses[backend] = status
        }
        XCTAssertEqual(statuses["nftables"]?.policyOnly, statuses["bpf"]?.policyOnly)
        XCTAssertEqual(statuses["iptables"]?.policyOnly, statuses["bpf"]?.policyOnly)

        try lab.unload()
        let objects = try BackendObjects.read(lab)
        XCTAssertFalse(objects.hasBPF || objects.hasNFTablesFilter || objects.hasIPTables, "\(objects)")
        XCTAssertTrue(objects.nftTables.filter { $0.hasSuffix(" bpfnet") }.isEmpty, "\(objects)")
    }

    // MARK: auto

    /// Without CAP_BPF/CAP_SYS_ADMIN eBPF cannot load: auto falls back to
    /// nftables, and `status` says why eBPF was not used.
    func testAutoFallsBackAndSaysWhy() throws {
        let file = lab.pinPath + "-policy.yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try DemoLabPolicy.write(PolicySettings(icc: false), to: file)
        // The pin directory already on a bpffs (as /sys/fs/bpf is on a real
        // host), so what fails is the first bpf(2) call, not the mount.
        try FileManager.default.createDirectory(atPath: lab.pinPath, withIntermediateDirectories: true)
        try ProcessRunner.runChecked(Command(["mount", "-t", "bpf", "bpf", lab.pinPath]))
        let result = try lab.topology.run(
            in: host,
            [
                "capsh", "--drop=cap_bpf,cap_sys_admin,cap_perfmon", "--", "-c",
                "exec \(lab.bpfnet) load --config \(file) --backend auto --pin-path \(lab.pinPath)",
            ], timeout: .seconds(120))
        XCTAssertTrue(result.stderr.contains("bpf not used"), result.stderr)
        let status = try lab.status()
        XCTAssertEqual(status.backend, "nftables")
        let reason = try XCTUnwrap(status.unusedBackends?["bpf"])
        XCTAssertTrue(reason.contains("Operation not permitted"), reason)
        let text = try lab.bpfnet(["status"])
        print("bpfnet status after the fallback:\n\(text)")
        XCTAssertTrue(text.contains("not used     bpf: "), text)
        let entries = try lab.measure(PolicySettings(icc: false))
        XCTAssertEqual(entries.filter { !$0.matches }.map(\.destination), [])
    }

    // MARK: failures keep the previous state

    func testForeignTableOrChainIsNotReplaced() throws {
        let settings = PolicySettings(icc: false)
        try runScenario(backend: "iptables", settings: settings, lab: lab)
        let before = try BackendObjects.read(lab)

        // Someone else's `table bridge bpfnet`.
        try lab.topology.run(in: host, ["nft", "add table bridge bpfnet { comment \"not bpfnet's\"; }"])
        XCTAssertThrowsError(try lab.load(settings, extraArguments: ["--backend", "nftables"])) { error in
            XCTAssertTrue("\(error)".contains("table bridge bpfnet exists and is not bpfnet's"), "\(error)")
        }
        var after = try BackendObjects.read(lab)
        XCTAssertEqual(after.iptablesChains, before.iptablesChains)
        XCTAssertEqual(try lab.status().backend, "iptables")
        try lab.topology.run(in: host, ["nft", "delete table bridge bpfnet"])

        // Someone else's `table ip6 bpfnet`.
        try lab.topology.run(in: host, ["nft", "add table ip6 bpfnet { comment \"not bpfnet's\"; }"])
        XCTAssertThrowsError(try lab.load(settings, extraArguments: ["--backend", "nftables"])) { error in
            XCTAssertTrue("\(error)".contains("table ip6 bpfnet exists and is not bpfnet's"), "\(error)")
        }
        after = try BackendObjects.read(lab)
        XCTAssertEqual(after.iptablesChains, before.iptablesChains)
        XCTAssertFalse(after.nftTables.contains("bridge bpfnet"), "\(after)")
        XCTAssertEqual(try lab.status().backend, "iptables")
        try lab.topology.run(in: host, ["nft", "delete table ip6 bpfnet"])

        // A dockerd's DOCKER chain while the nftables backend runs.
        try runScenario(backend: "nftables", settings: settings, lab: lab)
        try lab.topology.run(in: host, ["iptables", "-N", "DOCKER"])
        XCTAssertThrowsError(try lab.load(settings, extraArguments: ["--backend", "iptables"])) { error in
            XCTAssertTrue("\(error)".contains("filter DOCKER exist and are not bpfnet's"), "\(error)")
        }
        after = try BackendObjects.read(lab)
        XCTAssertTrue(after.hasNFTablesFilter, "\(after)")
        XCTAssertEqual(try lab.status().backend, "nftables")
        try lab.topology.run(in: host, ["iptables", "-X", "DOCKER"])
        let entries = try lab.measure(settings)
        XCTAssertEqual(entries.filter { !$0.matches }.map(\.destination), [])
    }

    /// A transaction the kernel rejects (a table another process owns, nft's
    /// `flags owner`) leaves the previous backend in force and says why.
    func testKernelRejectionKeepsThePreviousRules() throws {
        let settings = PolicySettings(icc: false)
        try runScenario(backend: "iptables", settings: settings, lab: lab)
        let before = try BackendObjects.read(lab)
        let comment = "owned by bpfnet: NAT for the bridge docker0; do not edit, run bpfnet unload"
        let owner = try lab.topology.startProcess(
            in: host,
            [
                "sh", "-c", "(echo 'add table ip bpfnet { flags owner; comment \"\(comment)\"; }'; sleep 120) | nft -i",
            ])
        defer { owner.stop() }
        let deadline = ContinuousClock.now + .seconds(10)
        while try !lab.topology.run(in: host, ["nft", "list", "tables"]).stdout.contains("ip bpfnet"),
            ContinuousClock.now < deadline
        { usleep(50_000) }

        XCTAssertThrowsError(try lab.load(settings, extraArguments: ["--backend", "nftables"])) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("nft -f -") && text.contains("Operation not permitted"), text)
        }
        let after = try BackendObjects.read(lab)
        XCTAssertFalse(after.nftTables.contains("bridge bpfnet"), "nothing of the transaction may remain: \(after)")
        XCTAssertEqual(after.iptablesChains, before.iptablesChains)
        XCTAssertEqual(try lab.status().backend, "iptables")
        let entries = try lab.measure(settings)
        XCTAssertEqual(entries.filter { !$0.matches }.map(\.destination), [])
    }

    /// The IPv6 rules go in after the IPv4 ones: when ip6tables-restore
    /// accepts the input as a test but fails to commit it, the IPv4 rules
    /// just committed are put back from the snapshot, the IPv6 ones stay as
    /// they were, and the sysctl turned on for the new policy goes off again.
    func testAFailedIPv6CommitPutsTheIPv4RulesBack() throws {
        // The default bridge alone: with icc on everywhere br_netfilter is off before the failed load.
        lab.close()
        lab = try DemoLab(userNetworks: false)
        let before = PolicySettings(icc: true, allowList: false, forwardPolicy: .accept)
        try runScenario(backend: "iptables", settings: before, lab: lab)
        func rules(_ save: String) throws -> [String] {
            let text = try lab.topology.run(in: host, [save]).stdout
            return IPTablesSave(parsing: text).tables.sorted { $0.key < $1.key }.flatMap { name, table in
                table.chains.map { "\(name) :\($0.name)" } + table.rules.map { "\(name) -A \($0.chain) \($0.spec)" }
            }
        }
        let rules4 = try rules("iptables-save")
        let rules6 = try rules("ip6tables-save")
        XCTAssertTrue(rules6.contains("filter :BPFNET-EXT"), "\(rules6)")

        let wrapper = lab.pinPath + "-ip6tables-restore"
        defer { try? FileManager.default.removeItem(atPath: wrapper) }
        try """
        #!/bin/sh
        case " $* " in *" --test "*) exec ip6tables-restore "$@" ;; esac
        echo "ip6tables-restore: simulated failure to commit" >&2
        exit 1

        """.write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        let file = lab.pinPath + "-policy.yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try DemoLabPolicy.write(
            PolicySettings(icc: false, allowList: true, forwardPolicy: .drop), to: file, userNetworks: false)
        let result = try ProcessRunner.run(
            Command(
                lab.topology.host.nsenter([
                    "env", "BPFNET_IP6TABLES_RESTORE=\(wrapper)", lab.bpfnet, "load", "--config", file, "--backend",
                    "iptables", "--pin-path", lab.pinPath,
                ]), timeout: .seconds(60)))
        XCTAssertEqual(result.status, .exited(1), "\(result)")
        XCTAssertTrue(result.stderr.contains("simulated failure to commit"), result.stderr)
        XCTAssertEqual(try rules("iptables-save"), rules4, "the IPv4 rules are the previous ones again")
        XCTAssertEqual(try rules("ip6tables-save"), rules6)
        XCTAssertEqual(try sysctl("net.bridge.bridge-nf-call-iptables"), "0")
        XCTAssertEqual(try sysctl("net.bridge.bridge-nf-call-ip6tables"), "0")
        let status = try lab.status()
        XCTAssertEqual(status.backend, "iptables")
        XCTAssertEqual(status.icc, true)
        let entries = try lab.measure(before)
        XCTAssertEqual(entries.filter { !$0.matches }.map(\.destination), [])
    }

    func testMissingToolsAreNamed() throws {
        let settings = PolicySettings(icc: true)
        try runScenario(backend: "nftables", settings: settings, lab: lab)
        let file = lab.pinPath + "-policy.yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try DemoLabPolicy.write(settings, to: file)
        for (variable, backend, tool) in [
            ("BPFNET_NFT", "nftables", "/nonexistent/nft"),
            ("BPFNET_IPTABLES_RESTORE", "iptables", "/nonexistent/iptables-restore"),
            ("BPFNET_IP6TABLES_RESTORE", "iptables", "/nonexistent/ip6tables-restore"),
        ] {
            let command = Command(
                lab.topology.host.nsenter([
                    "env", "\(variable)=\(tool)", lab.bpfnet, "load", "--config", file, "--backend", backend,
                    "--pin-path", lab.pinPath,
                ]), timeout: .seconds(60))
            let result = try ProcessRunner.run(command)
            XCTAssertEqual(result.status, .exited(1), "\(result)")
            XCTAssertTrue(result.stderr.contains(tool) && result.stderr.contains("not installed"), result.stderr)
            XCTAssertEqual(try lab.status().backend, "nftables")
        }
    }
}

/// Writes a scenario policy file the way DemoLab does.
enum DemoLabPolicy {
    static func write(_ settings: PolicySettings, to file: String, userNetworks: Bool = true) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(Scenario.policy(settings, userNetworks: userNetworks)).write(to: URL(fileURLWithPath: file))
    }
}
