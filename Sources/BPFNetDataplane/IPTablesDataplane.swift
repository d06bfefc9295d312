// SPDX-License-Identifier: Apache-2.0
//
// The iptables fallback for hosts without nft: Docker's chains in Docker's
// order (IPTablesRuleset), applied with one `iptables-restore --noflush`
// per change, and its IPv6 rules (IP6TablesRuleset) with one
// `ip6tables-restore --noflush`. Container-to-container rules need
// br_netfilter's bridge-nf-call-iptables=1 (bridge-nf-call-ip6tables=1 for
// IPv6); this backend sets them in its own network namespace only while icc
// is off, and puts back what it changed.

import BPFNetCore
import Foundation
import LinuxNet
import Logging
import SystemPackage

public final class IPTablesDataplane: Dataplane {
    public let backend = Backend.iptables
    public let variant: IPTablesVariant
    /// Where an eBPF dataplane would be pinned (removed when this backend takes over).
    public let pinPath: FilePath
    /// Backend → why `--backend auto` did not use it; kept with the rules.
    public var unusedBackends: [String: String] = [:]
    private let logger: Logger
    private let peerRouteKeeper = PeerRouteKeeper()

    static let bridgeNetfilterSysctl = "net/bridge/bridge-nf-call-iptables"
    static let bridgeNetfilter6Sysctl = "net/bridge/bridge-nf-call-ip6tables"

    public init(
        variant: IPTablesVariant = .fromEnvironment, pinPath: FilePath = BPFDataplane.defaultPinPath,
        logger: Logger = Logger(label: "bpfnet.iptables")
    ) {
        self.variant = variant
        self.pinPath = pinPath
        self.logger = logger
    }

    // MARK: apply

    public func forgetCachedState() { peerRouteKeeper.forget() }

    public func apply(_ policy: Policy) throws {
        var compiled = try NetfilterBackends.compile(policy, backend: backend)
        compiled.unusedBackends = unusedBackends
        let peerRoutes = try peerRouteKeeper.plan(policy.peers)
        guard NetfilterCommand.isInstalled(variant.restoreCommand) else {
            throw DataplaneError.notFound(
                "iptables: `\(variant.restoreCommand)` is not installed — install iptables "
                    + "or choose another --backend")
        }
        // Without the IPv6 rules, IPv6 would pass between containers and to
        // published ports on interfaces with an allow-list: not a policy in force.
        guard NetfilterCommand.isInstalled(variant.restore6Command), NetfilterCommand.isInstalled(variant.save6Command)
        else {
            throw DataplaneError.notFound(
                "iptables: `\(variant.restore6Command)` is not installed (not installed or not executable; "
                    + "the IPv6 rules need ip6tables-restore and ip6tables-save) — install iptables (it has "
                    + "ip6tables) or choose another --backend; nothing was changed")
        }
        // Without the ebtables rules, ARP claiming another's address and
        // frames in VLAN tags would pass: iptables sees neither.
        guard NetfilterCommand.isInstalled(Self.ebtablesRestore), NetfilterCommand.isInstalled(Self.ebtablesSave)
        else {
            throw DataplaneError.notFound(
                "iptables: `\(Self.ebtablesRestore)` is not installed (the ARP and VLAN rules need ebtables-restore "
                    + "and ebtables-save) — install iptables (Debian's has ebtables-nft) or choose another "
                    + "--backend; nothing was changed")
        }
        let snapshot = try variant.save()
        try checkOwnership(snapshot.parsed)
        let snapshot6 = try variant.save6()
        var changes = IPTablesRuleset.recordedChanges(snapshot.parsed)

        // br_netfilter first when it is needed: rules for bridged packets
        // without it would silently enforce nothing.
        let needsBridgeNetfilter = IPTablesRuleset.needsBridgeNetfilter(compiled)
        var turnedOnNow: [String] = []
        if needsBridgeNetfilter {
            for (sysctl, recorded) in [
                (Self.bridgeNetfilterSysctl, \IPTablesRuleset.HostChanges.setBridgeNetfilter),
                (Self.bridgeNetfilter6Sysctl, \IPTablesRuleset.HostChanges.setBridgeNetfilter6),
            ] {
                guard let value = try? Sysctl.read(sysctl) else {
                    for name in turnedOnNow { try? HostSystem.setSysctl(name, "0") }
                    throw DataplaneError.notFound(
                        "iptables: icc=false needs br_netfilter (bridged packets must pass "
                            + "iptables and ip6tables), but /proc/sys/\(sysctl) does not exist — modprobe br_netfilter, "
                            + "or use --backend nftables, which needs no br_netfilter")
                }
                if value != "1" {
                    try HostSystem.setSysctl(sysctl, "1")
                    changes[keyPath: recorded] = true
                    turnedOnNow.append(sysctl)
                }
            }
        }
        var restoreSysctls: [String] = []
        if !needsBridgeNetfilter && changes.setBridgeNetfilter {
            changes.setBridgeNetfilter = false
            restoreSysctls.append(Self.bridgeNetfilterSysctl)
        }
        if !needsBridgeNetfilter && changes.setBridgeNetfilter6 {
            changes.setBridgeNetfilter6 = false
            restoreSysctls.append(Self.bridgeNetfilter6Sysctl)
        }
        if policy.ipForward {
            try HostSystem.setSysctl("net/ipv4/ip_forward", "1")
        }

        let input = IPTablesRuleset(policy: compiled, current: snapshot.parsed, changes: changes).render()
        let input6 = IP6TablesRuleset(policy: compiled, current: snapshot6.parsed).render()
        do {
            try restore(input, snapshot: snapshot.text, input6: input6, snapshot6: snapshot6.text)
        } catch {
            for name in turnedOnNow { try? HostSystem.setSysctl(name, "0") }
            throw error
        }
        for name in restoreSysctls {
            try HostSystem.setSysctl(name, "0")
        }
        // Last: should it fail, the iptables rules are in force and the error says what is missing.
        try NetfilterCommand.run(
            [Self.ebtablesRestore, "--noflush"],
            input: EBTablesRuleset.render(compiled, current: try Self.ebtablesSaveText()),
            purpose: "iptables: installing bpfnet's ARP and VLAN rules (ebtables)")
        logger.info("iptables rules installed")
        try peerRouteKeeper.reconcile(peerRoutes, logger: logger)
        try NetfilterBackends.retireOthers(except: backend, pinPath: pinPath, logger: logger)
    }

    /// Docker's chains that exist without bpfnet's state chain belong to a
    /// dockerd running with --iptables=true (or left by one).
    private func checkOwnership(_ save: IPTablesSave) throws {
        guard !IPTablesRuleset.isLoaded(save) else { return }
        let filter = save.table("filter")
        var foreign = IPTablesRuleset.conflictingFilterChains.filter(filter.hasChain).map { "filter \($0)" }
        if save.table("nat").hasChain(IPTablesRuleset.dockerChain) { foreign.append("nat DOCKER") }
        foreign += filter.chains.map(\.name).filter { $0.hasPrefix("BPFNET-") }.map { "filter \($0)" }
        guard foreign.isEmpty else {
            throw DataplaneError.busy(
                "iptables: chain(s) \(foreign.joined(separator: ", ")) exist and are not bpfnet's (a dockerd with "
                    + "--iptables=true, or left by one) — stop it or start it with --iptables=false and remove them "
                    + "(\(variant.single) -F/-X), or use --backend nftables; nothing was changed")
        }
    }

    /// Runs both inputs as a test first (nothing changes when either is
    /// rejected), then for real: the IPv4 rules, then the IPv6 rules.
    /// iptables-restore commits table by table: if a later table (or the IPv6
    /// rules) fails after an earlier one was committed, everything is put back
    /// from the snapshots taken before.
    private func restore(_ input: String, snapshot: String, input6: String, snapshot6: String) throws {
        try NetfilterCommand.run(
            [variant.restoreCommand, "--noflush", "--test", "-w"], input: input,
            purpose: "iptables: checking bpfnet's rules (nothing was changed)")
        try NetfilterCommand.run(
            [variant.restore6Command, "--noflush", "--test", "-w"], input: input6,
            purpose: "iptables: checking bpfnet's IPv6 rules (nothing was changed)")
        do {
            try NetfilterCommand.run(
                [variant.restoreCommand, "--noflush", "-w"], input: input,
                purpose: "iptables: installing bpfnet's rules")
            try NetfilterCommand.run(
                [variant.restore6Command, "--noflush", "-w"], input: input6,
                purpose: "iptables: installing bpfnet's IPv6 rules")
        } catch {
            var failures: [String] = []
            // iptables-save's "# Generated ... on <date>" lines always differ.
            func rules(_ text: String) -> [Substring] { text.split(separator: "\n").filter { !$0.hasPrefix("#") } }
            for ipv6 in [false, true] {
                let current = (try? ipv6 ? variant.save6().text : variant.save().text) ?? ""
                let before = ipv6 ? snapshot6 : snapshot
                let restore = ipv6 ? variant.restore6Command : variant.restoreCommand
                let tables: Set<String> = ipv6 ? ["filter"] : ["filter", "nat"]
                guard rules(current) != rules(before) else { continue }
                do {
                    try NetfilterCommand.run(
                        [restore, "-c", "-w"], input: Self.tables(tables, of: before),
                        purpose: "iptables: putting back the previous rules (\(restore))")
                } catch let rollback {
                    failures.append("\(rollback)")
                }
            }
            if !failures.isEmpty {
                throw DataplaneError.runtime(
                    "\(error); putting back the previous rules failed too: \(failures.joined(separator: "; "))")
            }
            throw error
        }
    }

    /// The sections of `tables` in iptables-save text.
    static func tables(_ names: Set<String>, of text: String) -> String {
        var out: [Substring] = []
        var keep = false
        for line in text.split(separator: "\n") {
            if line.hasPrefix("*") { keep = names.contains(String(line.dropFirst())) }
            if keep { out.append(line) }
            if line == "COMMIT" { keep = false }
        }
        return out.joined(separator: "\n") + "\n"
    }

    // MARK: status

    /// Whether bpfnet's iptables (or ip6tables) chains are loaded with `variant` in this namespace.
    public static func isLoaded(variant: IPTablesVariant) -> Bool {
        variant.hasStateChain() || variant.hasStateChain6()
    }

    public func status() throws -> DataplaneStatus {
        let save = try variant.save().parsed
        guard IPTablesRuleset.isLoaded(save) else {
            throw DataplaneError.notFound(
                "iptables: nothing is loaded (no chain \(IPTablesRuleset.stateChain) in "
                    + "\(variant.saveCommand)) — run `bpfnet load --backend iptables --config FILE` first")
        }
        let save6 = variant.mayHoldRules6() ? try variant.save6().parsed : nil
        guard let policy = IPTablesRuleset.policy(from: save, save6: save6) else {
            throw DataplaneError.runtime(
                "iptables: chain \(IPTablesRuleset.stateChain) has no readable settings; "
                    + "run `bpfnet unload` and load again")
        }
        var status = policy.status(backend: backend.rawValue, interfaceIndex: HostSystem.interfaceIndex)
        status.nat = NATMode.netfilter.rawValue  // eBPF NAT needs the eBPF backend
        var counters = IPTablesRuleset.counters(from: save)
        // The IPv6 rules count under the same reasons (icc, source).
        if let save6 {
            for (reason, value) in IPTablesRuleset.counters(from: save6) {
                counters[reason, default: DataplaneStatus.CounterValue()].packets += value.packets
                counters[reason, default: DataplaneStatus.CounterValue()].bytes += value.bytes
            }
        }
        // The ARP and VLAN drops (ebtables) count under the port program's reasons (spoofed, encap).
        if NetfilterCommand.isInstalled(Self.ebtablesSave) {
            let saved = try NetfilterCommand.run(
                [Self.ebtablesSave, "-c", "-t", "filter"],
                purpose: "iptables: reading the ARP and VLAN rules' counters (ebtables-save -c)")
            for (reason, value) in EBTablesRuleset.counters(fromSaveWithCounters: saved) {
                counters[reason, default: DataplaneStatus.CounterValue()].packets += value.packets
                counters[reason, default: DataplaneStatus.CounterValue()].bytes += value.bytes
            }
        }
        NetfilterBackends.setCounters(&status, [IPTablesRuleset.program: counters])
        status.addAgentState(from: AgentFiles(pinPath: pinPath))
        PeerRoutes.addInstalledRoutes(to: &status, name: HostSystem.interfaceName)
        return status
    }

    // MARK: ebtables

    /// The ARP and VLAN rules (EBTablesRuleset) go in with the system's
    /// ebtables whatever the iptables variant: the bridge family is a table
    /// of its own, and Debian's iptables package ships ebtables-nft.
    static let ebtablesRestore = "ebtables-restore"
    static let ebtablesSave = "ebtables-save"

    static func ebtablesSaveText() throws -> String {
        try NetfilterCommand.run(
            [ebtablesSave, "-t", "filter"], purpose: "iptables: reading the ARP and VLAN rules (ebtables-save)")
    }

    // MARK: unload

    public func unload() throws {
        if NetfilterCommand.isInstalled(Self.ebtablesSave),
            let input = EBTablesRuleset.renderRemoval(current: try Self.ebtablesSaveText())
        {
            try NetfilterCommand.run(
                [Self.ebtablesRestore, "--noflush"], input: input,
                purpose: "iptables: removing bpfnet's ARP and VLAN rules (ebtables)")
        }
        // IPv6 first: the IPv4 state chain records the sysctls for both.
        if variant.mayHoldRules6(), let input = IP6TablesRuleset.renderRemoval(current: try variant.save6().parsed) {
            try NetfilterCommand.run(
                [variant.restore6Command, "--noflush", "-w"], input: input,
                purpose: "iptables: removing bpfnet's IPv6 rules")
        }
        guard variant.mayHoldRules() else { return }
        let save = try variant.save().parsed
        let changes = IPTablesRuleset.recordedChanges(save)
        if let input = IPTablesRuleset.renderRemoval(current: save, changes: changes) {
            try NetfilterCommand.run(
                [variant.restoreCommand, "--noflush", "-w"], input: input,
                purpose: "iptables: removing bpfnet's rules")
        }
        if changes.setBridgeNetfilter {
            try HostSystem.setSysctl(Self.bridgeNetfilterSysctl, "0")
        }
        if changes.setBridgeNetfilter6 {
            try HostSystem.setSysctl(Self.bridgeNetfilter6Sysctl, "0")
        }
    }
}
