// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import BPFNetAgent
import BPFNetCore
import BPFNetDataplane
import BPFNetMetrics
import Foundation
import SystemPackage

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the backend, policy, containers, links and per-reason counters in force.")

    @Flag(
        help: ArgumentHelp(
            "Print JSON (fields: backend, bridge, icc, forwardPolicy, ipForward, extInterfaces, networks, peers, "
                + "containers, links, counters, ...; see docs/cli.md)."))
    var json = false

    @Flag(
        help: ArgumentHelp(
            "Print the counters and gauges once in Prometheus text format (for node_exporter's textfile "
                + "collector; the metrics of docs/cli.md, without the agent's)."))
    var prometheus = false

    @Flag(
        help: ArgumentHelp(
            "Also list every live eBPF NAT connection (--nat ebpf; docs/nat.md): outside peer, published "
                + "address and port, container, state, age, idle time left, packets each way."))
    var connections = false

    @OptionGroup var dataplaneOptions: DataplaneOptions

    func validate() throws {
        guard !(json && prometheus) else { throw ValidationError("--json and --prometheus: choose one") }
        guard !(connections && prometheus) else { throw ValidationError("--connections and --prometheus: choose one") }
    }

    func run() throws {
        if prometheus {
            print(try StatusPrinter.prometheus(dataplaneOptions), terminator: "")
            return
        }
        let dataplane = try dataplaneOptions.loadedDataplane()
        let status =
            if connections, let bpf = dataplane as? BPFDataplane {
                try bpf.statusWithConnections()
            } else {
                try dataplane.status()
            }
        if json {
            print(try StatusPrinter.json(status))
        } else {
            print(StatusPrinter.text(status), terminator: "")
        }
    }
}

enum StatusPrinter {
    /// The metrics of the loaded dataplane; only `bpfnet_dataplane_loaded 0`
    /// when nothing is loaded (an alert can fire on it), not an error.
    static func prometheus(_ options: DataplaneOptions) throws -> String {
        let status: DataplaneStatus
        do {
            status = try options.loadedDataplane().status()
        } catch DataplaneError.notFound {
            return DataplaneMetrics.text(status: nil, dropEvents: nil)
        }
        let dropEvents = try MetricsScrape.dropEvents(status, pinPath: FilePath(options.pinPath))
        return DataplaneMetrics.text(status: status, dropEvents: dropEvents)
    }

    static func json(_ status: DataplaneStatus) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(status), as: UTF8.self)
    }

    static func text(_ status: DataplaneStatus) -> String {
        var out = ""
        func line(_ text: String = "") { out += text + "\n" }
        line("backend        \(status.backend)")
        for (backend, reason) in (status.unusedBackends ?? [:]).sorted(by: { $0.key < $1.key }) {
            line("  not used     \(backend): \(reason)")
        }
        line("bridge         \(status.bridge)" + (status.bridgeAddress.map { " (\($0))" } ?? ""))
        line("icc            \(status.icc)")
        line("forward policy \(status.forwardPolicy)")
        line("ip_forward     \(status.ipForward ? "managed on" : "left alone")")
        if let fastPath = status.fastPathEnabled { line("fast path      \(fastPath ? "on" : "off")") }
        if let nat = status.nat {
            let draining = nat != NATMode.ebpf.rawValue && (status.natConnections ?? 0) > 0
            line(
                "nat            \(nat)"
                    + (status.natConnections.map { ", \($0) eBPF connections" + (draining ? " draining" : "") } ?? ""))
        }
        if let agent = status.agent {
            let state = agent.running ? "running (pid \(agent.pid.map(String.init) ?? "?"))" : "not running"
            line(
                "agent          bpfnet run \(state), following \(agent.dockerHost)"
                    + (agent.connected ? "" : " (disconnected)"))
            if let latency = agent.lastSyncLatencyMs {
                line(
                    "               last start → rules: \(Int(latency.rounded())) ms"
                        + (agent.lastSyncContainer.map { " (\($0))" } ?? ""))
            }
            if let error = agent.lastError { line("               last error: \(error)") }
            for warning in agent.warnings ?? [] { line("               WARNING: \(warning)") }
        }
        line()
        line("external interfaces (\(status.extInterfaces.count))")
        for ext in status.extInterfaces {
            line(
                "  \(pad(ext.name, 16)) allow \(ext.allowSources.isEmpty ? "every source" : ext.allowSources.joined(separator: ", "))"
                    + (ext.xdpMode.map { "  (XDP \($0))" } ?? ""))
            if let warning = ext.xdpModeWarning { line("  WARNING: \(warning)") }
        }
        if let networks = status.networks {
            line()
            line("networks (\(networks.count))")
            line("  \(pad("NAME", 16)) \(pad("BRIDGE", 16)) \(pad("SUBNET", 18)) ICC   INTERNAL MASQ  CONTAINERS PORTS")
            for network in networks {
                line(
                    "  \(pad(network.name, 16)) \(pad(network.bridge, 16)) \(pad(network.subnet ?? "-", 18)) "
                        + "\(pad(network.icc ? "on" : "off", 5)) \(pad(network.internal ? "yes" : "no", 8)) "
                        + "\(pad(network.masquerade ? "on" : "off", 5)) \(pad(String(network.containers), 10)) "
                        + (network.ports.map(String.init) ?? "-") + (network.subnet6.map { "  IPv6 \($0)" } ?? ""))
            }
        }
        if let peers = status.peers {
            line()
            line("peers (\(peers.count), policy \(status.peerPolicy ?? "icc"))")
            line("  \(pad("NAME", 16)) \(pad("ADDRESS", 16)) SUBNETS")
            for peer in peers {
                line("  \(pad(peer.name ?? "-", 16)) \(pad(peer.address, 16)) \(peer.subnets.joined(separator: ", "))")
                for route in peer.routes ?? [] { line("    route \(route)") }
            }
        }
        line()
        line("containers (\(status.containers.count))")
        for container in status.containers {
            line(
                "  \(pad(container.name, 16)) \(pad(container.ip, 16)) \(container.mac)  \(container.port)"
                    + (container.ipv6.map { "  \($0)" } ?? ""))
        }
        if let ports = status.bridgePorts {
            let unknown = ports.count { $0.container == nil }
            let bare = ports.filter { $0.hook == nil }
            line()
            line(
                "bridge ports (\(ports.count): \(ports.count - unknown) known, \(unknown) unknown, "
                    + "\(bare.count) without the port program)")
            for port in ports {
                line(
                    "  \(pad(port.name, 16)) \(pad(port.hook ?? "NONE", 4)) "
                        + (port.container ?? "unknown container (unknown-port: host and outside only under icc=false)"))
            }
            if !bare.isEmpty {
                line(
                    "  ! \(bare.map(\.name).joined(separator: ", ")): no program yet; the guard holds them until `bpfnet load`"
                )
            }
        }
        line()
        line("links (\(status.links.count))")
        for link in status.links {
            line("  \(pad("\(link.parent) -> \(link.child)", 32)) \(link.ports.joined(separator: " "))")
        }
        line()
        line("published ports (\(status.published.count))")
        for port in status.published {
            line(
                "  \(pad("\(port.hostIP ?? "*"):\(port.hostPort)/\(port.proto)", 24)) -> \(port.container):\(port.containerPort)"
            )
        }
        line()
        line("counters (packets)")
        for (program, reasons) in status.programCounters.sorted(by: { $0.key < $1.key }) {
            let cells = reasons.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.packets)" }
            line("  \(pad(program, 9)) \(cells.isEmpty ? "-" : cells.joined(separator: ", "))")
        }
        if status.programCounters.isEmpty { line("  (no packets yet)") }
        if let fastPath = status.fastPath {
            line()
            line("fast path (packets passed: hit = delivered directly, else why it took the normal path)")
            for (program, events) in fastPath.sorted(by: { $0.key < $1.key }) {
                let cells = events.sorted { ($0.key == "hit" ? 0 : 1, $0.key) < ($1.key == "hit" ? 0 : 1, $1.key) }.map
                { "\($0.key) \($0.value)" }
                line("  \(pad(program, 9)) \(cells.joined(separator: ", "))")
            }
            if fastPath.isEmpty { line("  (no packets yet)") }
        }
        if let connections = status.connections {
            line()
            line("eBPF NAT connections (\(connections.count))")
            if !connections.isEmpty {
                line(
                    "  \(pad("proto", 5)) \(pad("outside", 21)) \(pad("published", 21)) \(pad("container", 21)) "
                        + "\(pad("state", 11)) \(pad("age", 7)) \(pad("expires", 8)) packets in/out")
            }
            for c in connections {
                line(
                    "  \(pad(c.proto, 5)) \(pad(c.outside, 21)) \(pad(c.published, 21)) \(pad(c.container, 21)) "
                        + "\(pad(c.state, 11)) \(pad("\(c.ageSeconds)s", 7)) \(pad("\(c.expiresInSeconds)s", 8)) "
                        + "\(c.packetsIn)/\(c.packetsOut)")
            }
        }
        return out
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }
}
