// SPDX-License-Identifier: Apache-2.0
//
// Runs nft and iptables-restore/-save for the netfilter fallbacks: one
// process per transaction (never per rule), with errors that name the
// command, what it was for and its stderr.

import BPFNetCore
import Foundation
import LinuxNet

enum NetfilterCommand {
    /// Runs `arguments` with `input` on stdin and returns stdout; throws a
    /// `DataplaneError` naming the command, `purpose` and stderr.
    @discardableResult
    static func run(
        _ arguments: [String], input: String? = nil, purpose: String,
        timeout: Duration = .seconds(300)
    ) throws(DataplaneError) -> String {
        let command = Command(arguments, input: input, timeout: timeout)
        let result: CommandResult
        do {
            result = try ProcessRunner.run(command)
        } catch {
            throw .notFound(
                "\(purpose): cannot run `\(arguments[0])`: it is not installed or not executable "
                    + "(looked in PATH and the sbin directories) — install it or choose another --backend")
        }
        guard result.succeeded else {
            if result.timedOut {
                throw .runtime("\(purpose): `\(command)` did not finish within \(timeout) and was killed")
            }
            let exitCode: Int32
            switch result.status {
            case .exited(let code): exitCode = code
            case .signaled(let signal): exitCode = 128 + signal
            }
            throw .command("\(purpose): `\(Self.shortDescription(command))`", status: exitCode, stderr: result.stderr)
        }
        return result.stdout
    }

    /// Whether `program` can be found.
    static func isInstalled(_ program: String) -> Bool {
        ProcessRunner.locate(program) != nil
    }

    /// The command without its (possibly huge) input.
    private static func shortDescription(_ command: Command) -> String {
        command.description + (command.input == nil ? "" : " (input on stdin)")
    }
}

/// The nft binary.
enum NFT {
    /// `nft`, or `BPFNET_NFT` (tests use it to show what happens without nft).
    static var program: String { ProcessInfo.processInfo.environment["BPFNET_NFT"] ?? "nft" }

    static func apply(_ script: String, purpose: String) throws(DataplaneError) {
        try NetfilterCommand.run([program, "-f", "-"], input: script, purpose: "nftables: \(purpose)")
    }

    /// Whether table `family name` exists, and its comment ("" when it has
    /// none). Asks for that table only: `nft list tables` reads the whole
    /// ruleset first, which takes seconds next to tens of thousands of
    /// iptables-nft rules; `--terse` leaves out set elements.
    static func table(_ family: String, _ name: String) throws(DataplaneError) -> (exists: Bool, comment: String) {
        let command = Command([program, "-t", "list", "table", family, name], timeout: .seconds(120))
        let result: CommandResult
        do {
            result = try ProcessRunner.run(command)
        } catch {
            throw .notFound(
                "nftables: reading table \(family) \(name): cannot run `\(program)`: "
                    + "it is not installed or not executable (looked in PATH and the sbin directories) — "
                    + "install it or choose another --backend")
        }
        if result.succeeded { return (true, NFTablesReadback.tableComment(result.stdout) ?? "") }
        if result.stderr.contains("No such file or directory") { return (false, "") }
        if case .exited(let code) = result.status {
            throw .command(
                "nftables: reading table \(family) \(name): `\(command)`", status: code, stderr: result.stderr)
        }
        throw .runtime("nftables: reading table \(family) \(name): \(result)")
    }

    static func listJSON(_ family: String, _ table: String) throws(DataplaneError) -> Data {
        Data(
            try NetfilterCommand.run(
                [program, "-j", "list", "table", family, table],
                purpose: "nftables: reading table \(family) \(table)"
            ).utf8)
    }

    /// Only the named counters of a table.
    static func countersJSON(_ family: String, _ table: String) throws(DataplaneError) -> Data {
        Data(
            try NetfilterCommand.run(
                [program, "-j", "list", "counters", "table", family, table],
                purpose: "nftables: reading the counters of table \(family) \(table)"
            ).utf8)
    }
}

/// Which iptables binaries a backend uses.
public enum IPTablesVariant: String, Sendable, CaseIterable {
    /// `iptables-restore`/`iptables-save` as installed (Debian: the nf_tables variant).
    case system
    /// `iptables-nft-restore`/`iptables-nft-save`.
    case nft
    /// `iptables-legacy-restore`/`iptables-legacy-save` (x_tables).
    case legacy

    /// `ip` or `ip6` + `tables` + the variant + `-restore`/`-save` (nil: the
    /// single-rule command, for messages): "ip6tables-legacy-save".
    private func command(ipv6: Bool, _ tool: String?) -> String {
        let variant =
            switch self {
            case .system: ""
            case .nft: "-nft"
            case .legacy: "-legacy"
            }
        return (ipv6 ? "ip6tables" : "iptables") + variant + (tool.map { "-" + $0 } ?? "")
    }

    var restoreCommand: String {
        // Tests point this elsewhere to show what happens without iptables-restore.
        ProcessInfo.processInfo.environment["BPFNET_IPTABLES_RESTORE"] ?? command(ipv6: false, "restore")
    }

    var saveCommand: String { command(ipv6: false, "save") }

    /// The single-rule command (`iptables`, ...), for messages.
    var single: String { command(ipv6: false, nil) }

    /// From `BPFNET_IPTABLES` (system|nft|legacy), default `system`.
    public static var fromEnvironment: IPTablesVariant {
        ProcessInfo.processInfo.environment["BPFNET_IPTABLES"].flatMap(IPTablesVariant.init(rawValue:)) ?? .system
    }

    /// `iptables-save -c`: every table this namespace has (one process; the
    /// legacy variant only dumps tables that exist, so nothing is created).
    func save() throws(DataplaneError) -> (text: String, parsed: IPTablesSave) {
        let text = try NetfilterCommand.run(
            [saveCommand, "-c"], purpose: "iptables: reading the rules (\(saveCommand))")
        return (text, IPTablesSave(parsing: text))
    }

    /// Whether bpfnet's state chain exists (`iptables -S BPFNET-STATE`,
    /// which reads only that chain).
    func hasStateChain() -> Bool {
        guard mayHoldRules() else { return false }
        if isLegacy && !Self.legacyTables().contains("filter") { return false }
        guard
            let result = try? ProcessRunner.run(
                Command(
                    [single, "-w", "-S", IPTablesRuleset.stateChain],
                    timeout: .seconds(60)))
        else { return false }
        return result.succeeded
    }

    /// The variants that are different binaries on this host (`system` is one of the others).
    static var distinct: [IPTablesVariant] { systemIsLegacy ? [.system, .nft] : [.system, .legacy] }

    /// Whether this variant's tables can hold anything in this namespace,
    /// without creating them: legacy tables show up in
    /// /proc/net/ip_tables_names once used; reading nf_tables-based ones
    /// never creates them.
    func mayHoldRules() -> Bool {
        switch self {
        case .legacy:
            return NetfilterCommand.isInstalled(saveCommand) && !Self.legacyTables().isEmpty
        case .nft, .system:
            guard NetfilterCommand.isInstalled(saveCommand) else { return false }
            if self == .system, Self.systemIsLegacy { return Self.legacy.mayHoldRules() }
            return true
        }
    }

    var isLegacy: Bool { self == .legacy || (self == .system && Self.systemIsLegacy) }

    /// Tables the legacy (x_tables) iptables has in this network namespace.
    static func legacyTables() -> Set<String> {
        let names = (try? String(contentsOfFile: "/proc/net/ip_tables_names", encoding: .utf8)) ?? ""
        return Set(names.split(separator: "\n").map(String.init))
    }

    // MARK: ip6tables

    /// `ip6tables-restore` and friends, for the IPv6 rules (IP6TablesRuleset).
    var restore6Command: String {
        // Tests point this elsewhere to show what happens without ip6tables-restore.
        ProcessInfo.processInfo.environment["BPFNET_IP6TABLES_RESTORE"] ?? command(ipv6: true, "restore")
    }

    var save6Command: String { command(ipv6: true, "save") }

    var single6: String { command(ipv6: true, nil) }

    /// `ip6tables-save -c`.
    func save6() throws(DataplaneError) -> (text: String, parsed: IPTablesSave) {
        let text = try NetfilterCommand.run(
            [save6Command, "-c"], purpose: "iptables: reading the IPv6 rules (\(save6Command))")
        return (text, IPTablesSave(parsing: text))
    }

    /// Whether this variant's ip6tables tables can hold anything in this
    /// namespace (as `mayHoldRules`, with /proc/net/ip6_tables_names).
    func mayHoldRules6() -> Bool {
        guard NetfilterCommand.isInstalled(save6Command) else { return false }
        if isLegacy { return !Self.legacyTables(ipv6: true).isEmpty }
        return true
    }

    /// Whether bpfnet's state chain exists in ip6tables.
    func hasStateChain6() -> Bool {
        guard mayHoldRules6() else { return false }
        if isLegacy && !Self.legacyTables(ipv6: true).contains("filter") { return false }
        guard
            let result = try? ProcessRunner.run(
                Command([single6, "-w", "-S", IP6TablesRuleset.stateChain], timeout: .seconds(60)))
        else { return false }
        return result.succeeded
    }

    /// Tables the legacy (x_tables) ip6tables has in this network namespace.
    static func legacyTables(ipv6: Bool) -> Set<String> {
        guard ipv6 else { return legacyTables() }
        let names = (try? String(contentsOfFile: "/proc/net/ip6_tables_names", encoding: .utf8)) ?? ""
        return Set(names.split(separator: "\n").map(String.init))
    }

    /// Whether `iptables-restore` is the legacy variant on this host.
    static let systemIsLegacy: Bool = {
        guard let result = try? ProcessRunner.run(Command(["iptables-restore", "--version"], timeout: .seconds(10))),
            result.succeeded
        else { return false }
        return !result.stdout.contains("nf_tables")
    }()
}
