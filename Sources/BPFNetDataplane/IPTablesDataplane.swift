// SPDX-License-Identifier: Apache-2.0
//
// The iptables fallback for hosts without nft: Docker's chains in Docker's
// order (IPTablesRuleset), applied with one `iptables-restore --noflush`
// per change. Container-to-container rules need br_netfilter's
// bridge-nf-call-iptables=1; this backend sets it in its own network
// namespace only while icc is off, and puts back what it changed.

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

    static let bridgeNetfilterSysctl = "net/bridge/bridge-nf-call-iptables"

    public init(
        variant: IPTablesVariant = .fromEnvironment, pinPath: FilePath = BPFDataplane.defaultPinPath,
        logger: Logger = Logger(label: "bpfnet.iptables")
    ) {
        self.variant = variant
        self.pinPath = pinPath
        self.logger = logger
    }

    // MARK: apply

    public func apply(_ policy: Policy) throws {
        var compiled = try NetfilterBackends.compile(policy, backend: backend)
        compiled.unusedBackends = unusedBackends
        guard NetfilterCommand.isInstalled(variant.restoreCommand) else {
            throw DataplaneError.notFound(
                "iptables: `\(variant.restoreCommand)` is not installed — install iptables "
                    + "or choose another --backend")
        }
        let snapshot = try variant.save()
        try checkOwnership(snapshot.parsed)
        var changes = IPTablesRuleset.recordedChanges(snapshot.parsed)

        // br_netfilter first when it is needed: rules for bridged packets
        // without it would silently enforce nothing.
        let needsBridgeNetfilter = IPTablesRuleset.needsBridgeNetfilter(compiled)
        var turnedOnNow = false
        if needsBridgeNetfilter {
            guard let value = try? Sysctl.read(Self.bridgeNetfilterSysctl) else {
                throw DataplaneError.notFound(
                    "iptables: icc=false needs br_netfilter (bridged packets must pass "
                        + "iptables), but /proc/sys/\(Self.bridgeNetfilterSysctl) does not exist — modprobe br_netfilter, "
                        + "or use --backend nftables, which needs no br_netfilter")
            }
            if value != "1" {
                try HostSystem.setSysctl(Self.bridgeNetfilterSysctl, "1")
                changes.setBridgeNetfilter = true
                turnedOnNow = true
            }
        }
        let restoreBridgeNetfilter = !needsBridgeNetfilter && changes.setBridgeNetfilter
        if restoreBridgeNetfilter { changes.setBridgeNetfilter = false }
        if policy.ipForward {
            try HostSystem.setSysctl("net/ipv4/ip_forward", "1")
        }

        let input = IPTablesRuleset(policy: compiled, current: snapshot.parsed, changes: changes).render()
        do {
            try restore(input, snapshot: snapshot.text)
        } catch {
            if turnedOnNow { try? HostSystem.setSysctl(Self.bridgeNetfilterSysctl, "0") }
            throw error
        }
        if restoreBridgeNetfilter {
            try HostSystem.setSysctl(Self.bridgeNetfilterSysctl, "0")
        }
        logger.info("iptables rules installed")
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

    /// Runs the input as a test first (nothing changes when it is rejected),
    /// then for real. iptables-restore commits table by table: if a later
    /// table fails after an earlier one was committed, the earlier ones are
    /// put back from the snapshot taken before.
    private func restore(_ input: String, snapshot: String) throws {
        try NetfilterCommand.run(
            [variant.restoreCommand, "--noflush", "--test", "-w"], input: input,
            purpose: "iptables: checking bpfnet's rules (nothing was changed)")
        do {
            try NetfilterCommand.run(
                [variant.restoreCommand, "--noflush", "-w"], input: input,
                purpose: "iptables: installing bpfnet's rules")
        } catch {
            // iptables-save's "# Generated ... on <date>" lines always differ.
            func rules(_ text: String) -> [Substring] { text.split(separator: "\n").filter { !$0.hasPrefix("#") } }
            let current = (try? variant.save().text) ?? ""
            if rules(current) != rules(snapshot) {
                do {
                    try NetfilterCommand.run(
                        [variant.restoreCommand, "-c", "-w"], input: Self.tables(["filter", "nat"], of: snapshot),
                        purpose: "iptables: putting back the previous rules")
                } catch let rollback {
                    throw DataplaneError.runtime("\(error); putting back the previous rules failed too: \(rollback)")
                }
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

    /// Whether bpfnet's iptables chains are loaded with `variant` in this namespace.
    public static func isLoaded(variant: IPTablesVariant) -> Bool {
        variant.hasStateChain()
    }

    public func status() throws -> DataplaneStatus {
        let save = try variant.save().parsed
        guard IPTablesRuleset.isLoaded(save) else {
            throw DataplaneError.notFound(
                "iptables: nothing is loaded (no chain \(IPTablesRuleset.stateChain) in "
                    + "\(variant.saveCommand)) — run `bpfnet load --backend iptables --config FILE` first")
        }
        guard let policy = IPTablesRuleset.policy(from: save) else {
            throw DataplaneError.runtime(
                "iptables: chain \(IPTablesRuleset.stateChain) has no readable settings; "
                    + "run `bpfnet unload` and load again")
        }
        var status = policy.status(backend: backend.rawValue, interfaceIndex: HostSystem.interfaceIndex)
        NetfilterBackends.setCounters(&status, [IPTablesRuleset.program: IPTablesRuleset.counters(from: save)])
        status.addAgentState(from: AgentFiles(pinPath: pinPath))
        return status
    }

    // MARK: unload

    public func unload() throws {
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
    }
}
