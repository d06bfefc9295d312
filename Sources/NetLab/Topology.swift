// SPDX-License-Identifier: Apache-2.0
//
// Builds a TopologySpec with iproute2 and tears it down again.
//
// Speed: one process per namespace plus two, whatever the size. One
// `ip -batch` creates every namespace; a thread per namespace sets its
// sysctls from inside it before any interface exists (Sysctl.swift); one
// `ip -n host -batch` creates the bridge and every veth pair directly in the
// right namespaces (the root namespace never sees them); then one
// `ip -n NS -batch` per container and external, run concurrently,
// configures the far ends.

import BPFNetCore
import LinuxNet
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public final class Topology: Sendable {
    public let spec: TopologySpec
    /// Unique per process and topology ("bn<pid><letters>"); every namespace
    /// is "<prefix>-<role>".
    public let prefix: String
    /// How long `build` took.
    public let buildDuration: Duration

    private struct State {
        var tornDown = false
        var processes: [BackgroundProcess] = []
    }
    private let state = Mutex(State())

    // MARK: Building

    /// Creates everything `spec` describes. On any failure what was created
    /// is deleted again before the error is thrown.
    /// Installs the SIGINT/SIGTERM/exit() safety net first.
    public static func build(_ spec: TopologySpec) throws(NetLabError) -> Topology {
        try spec.validate()
        guard NetLab.isRoot else { throw .notRoot("building network namespaces") }
        NetLab.installCleanupOnExit()
        let started = ContinuousClock.now
        let prefix = Self.nextPrefix(roles: spec.roles)
        let names = spec.roles.map { "\(prefix)-\($0)" }
        // Recorded before they exist: a signal half-way through still finds them.
        CleanupRegistry.shared.register(namespaces: names)
        do {
            try Self.create(spec, prefix: prefix)
        } catch {
            let left = NamespaceJanitor.delete(names)
            if left.isEmpty { CleanupRegistry.shared.unregister(namespaces: names) }
            throw error
        }
        return Topology(spec: spec, prefix: prefix, buildDuration: .now - started)
    }

    private init(spec: TopologySpec, prefix: String, buildDuration: Duration) {
        self.spec = spec
        self.prefix = prefix
        self.buildDuration = buildDuration
    }

    deinit {
        teardown()
    }

    private static let counter = Atomic<Int>(0)

    /// "bn<pid>" plus letters counting topologies in this process; skips any
    /// combination that is somehow taken (a dead process with our pid).
    static func nextPrefix(roles: [String]) -> String {
        while true {
            var n = counter.add(1, ordering: .relaxed).oldValue
            var letters = ""
            repeat {
                letters = String(UnicodeScalar(UInt8(ascii: "a") + UInt8(n % 26))) + letters
                n = n / 26 - 1
            } while n >= 0
            let prefix = "bn\(getpid())\(letters)"
            if !roles.contains(where: { NetworkNamespace(unopenedNamed: "\(prefix)-\($0)").exists }) { return prefix }
        }
    }

    private static func create(_ spec: TopologySpec, prefix: String) throws(NetLabError) {
        func ns(_ role: String) -> NetworkNamespace { NetworkNamespace(unopenedNamed: "\(prefix)-\(role)") }
        let host = ns(TopologySpec.hostRole)

        // 1. Namespaces.
        try batch(in: nil, spec.roles.map { "netns add \(prefix)-\($0)" })

        // 2. Sysctls, inside each namespace only, before interfaces exist.
        let ipv6 = spec.disableIPv6 ? "1" : "0"
        let ipv6Settings: [(key: String, value: String)] = [
            ("net.ipv6.conf.all.disable_ipv6", ipv6), ("net.ipv6.conf.default.disable_ipv6", ipv6),
        ]
        var hostSettings = ipv6Settings + [("net.ipv4.ip_forward", spec.ipForward ? "1" : "0")]
        // br_netfilter is global (module or built in); its switches are per
        // namespace and default to 1 in a new one, so they are always written.
        if access("/proc/sys/net/bridge/bridge-nf-call-iptables", F_OK) == 0 {
            let value = spec.bridgeNetfilter ? "1" : "0"
            hostSettings += [
                ("net.bridge.bridge-nf-call-iptables", value), ("net.bridge.bridge-nf-call-ip6tables", value),
            ]
        } else if spec.bridgeNetfilter {
            throw .invalidSpec("bridgeNetfilter needs br_netfilter, which is not loaded (modprobe br_netfilter)")
        }
        hostSettings += spec.hostSysctls.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        try NamespaceSysctl.write([(host, hostSettings)] + spec.roles.dropFirst().map { (ns($0), ipv6Settings) })

        // 3. The host: bridge, every veth pair (far ends created in place).
        let bridge = spec.bridge
        let bridgeMAC = bridge.mac ?? MACAddress(dockerStyleFor: bridge.address.address)
        var hostLines = [
            "link set lo up",
            "link add \(bridge.name)\(bridge.mtu.map { " mtu \($0)" } ?? "") address \(bridgeMAC) type bridge",
            "addr add \(bridge.address) dev \(bridge.name)",
            "link set \(bridge.name) up",
        ]
        for network in spec.networks {
            let mac = network.mac ?? MACAddress(dockerStyleFor: network.address.address)
            hostLines += [
                "link add \(network.name)\(network.mtu.map { " mtu \($0)" } ?? "") address \(mac) type bridge",
                "addr add \(network.address) dev \(network.name)",
                "link set \(network.name) up",
            ]
        }
        for container in spec.containers {
            let port = container.resolvedHostInterface
            hostLines += [
                "link add \(port) type veth peer name eth0 netns \(ns(container.name).name)",
                "link set \(port) master \(spec.bridge(of: container)?.name ?? bridge.name)",
                "link set \(port) up",
            ]
            if spec.staticNeighbours {
                hostLines.append(
                    "neigh replace \(container.address) lladdr \(container.resolvedMAC) dev \(bridge.name) nud permanent"
                )
            }
        }
        for external in spec.externals {
            let primary = external.addresses[0]
            hostLines += [
                "link add \(external.hostInterface) type veth peer name eth0 netns \(ns(external.name).name)",
                "addr add \(external.hostAddress) dev \(external.hostInterface)",
                "link set \(external.hostInterface) up",
            ]
            for address in external.addresses.dropFirst() where !external.hostAddress.network.contains(address.address)
            {
                hostLines.append(
                    "route replace \(address.network) via \(primary.address) dev \(external.hostInterface)")
            }
        }
        try batch(in: host, hostLines)

        // 4. The far ends, the FDB and GRO, all at once.
        var finishing: [(Command, [String])] = []
        for container in spec.containers {
            let own = spec.bridge(of: container) ?? bridge
            var lines = [
                "link set lo up",
                "link set eth0 address \(container.resolvedMAC)",
                "addr add \(container.address)/\(own.address.prefixLength) dev eth0",
                "link set eth0 up",
                "route add default via \(own.address.address) dev eth0",
            ]
            if spec.staticNeighbours {
                lines.append("neigh replace \(bridge.address.address) lladdr \(bridgeMAC) dev eth0 nud permanent")
                for other in spec.containers where other.name != container.name {
                    lines.append("neigh replace \(other.address) lladdr \(other.resolvedMAC) dev eth0 nud permanent")
                }
            }
            finishing.append((IPBatch.command(in: ns(container.name), lines), lines))
        }
        let hostAddresses = [bridge.address.address] + spec.externals.map(\.hostAddress.address)
        for external in spec.externals {
            let gateway = external.hostAddress.address
            var lines = ["link set lo up"]
            lines += external.addresses.map { "addr add \($0) dev eth0" }
            lines.append("link set eth0 up")
            var routed: Set<IPv4CIDR> = [external.hostAddress.network]
            var destinations = hostAddresses.filter { $0 != gateway }.map { IPv4CIDR(address: $0, prefixLength: 32)! }
            if external.routeToBridge { destinations.insert(bridge.address.network, at: 0) }
            destinations += external.extraRoutes
            for destination in destinations where !routed.contains(destination) {
                if routed.contains(where: {
                    $0.prefixLength < destination.prefixLength && $0.contains(destination.address)
                }) {
                    continue
                }
                routed.insert(destination)
                lines.append("route replace \(destination) via \(gateway) dev eth0")
            }
            finishing.append((IPBatch.command(in: ns(external.name), lines), lines))
        }
        if spec.staticNeighbours && !spec.containers.isEmpty {
            let lines = spec.containers.map {
                "fdb replace \($0.resolvedMAC) dev \($0.resolvedHostInterface) master static"
            }
            finishing.append((IPBatch.command(.bridge, in: host, lines), lines))
        }
        for container in spec.containers {
            if container.hostSideGRO {
                finishing.append((host.command(["ethtool", "-K", container.resolvedHostInterface, "gro", "on"]), []))
            }
            if container.containerSideGRO {
                finishing.append((ns(container.name).command(["ethtool", "-K", "eth0", "gro", "on"]), []))
            }
        }
        for external in spec.externals {
            if external.hostSideGRO {
                finishing.append((host.command(["ethtool", "-K", external.hostInterface, "gro", "on"]), []))
            }
            // An outside host is a wire: its frames reach the host with complete
            // checksums, as off a NIC. A veth would hand over its sockets'
            // partial checksums, which the eBPF paths that take frames from
            // the outside (the eBPF NAT, the routed fast path) must leave to
            // the stack, so the labs would test the fallback instead.
            finishing.append((ns(external.name).command(["ethtool", "-K", "eth0", "tx", "off"]), []))
        }
        let results = ProcessRunner.runAll(finishing.map(\.0))
        for (result, (_, lines)) in zip(results, finishing) {
            do { try result.get().check() } catch { throw IPBatch.explain(error, lines) }
        }
    }

    private static func batch(in namespace: NetworkNamespace?, _ lines: [String]) throws(NetLabError) {
        do {
            try ProcessRunner.runChecked(IPBatch.command(in: namespace, lines))
        } catch {
            throw IPBatch.explain(error, lines)
        }
    }

    // MARK: Tearing down

    /// Stops every process started through this topology, then deletes its
    /// namespaces (which destroys their veths). Idempotent; never throws.
    /// Returns the namespaces that could not be deleted (normally none).
    @discardableResult
    public func teardown() -> [String] {
        let processes = state.withLock { state -> [BackgroundProcess]? in
            if state.tornDown { return nil }
            state.tornDown = true
            defer { state.processes = [] }
            return state.processes
        }
        guard let processes else { return [] }
        for process in processes { process.requestStop() }
        for process in processes { process.stop() }
        let names = namespaces.map(\.name)
        let left = NamespaceJanitor.delete(names)
        CleanupRegistry.shared.unregister(namespaces: names.filter { !left.contains($0) })
        return left
    }

    public var isTornDown: Bool { state.withLock { $0.tornDown } }

    // MARK: Looking things up

    public var host: NetworkNamespace { namespace(TopologySpec.hostRole) }

    /// Every namespace of this topology, host first.
    public var namespaces: [NetworkNamespace] { spec.roles.map(namespace) }

    /// The namespace of a role ("host", a container or an external name).
    /// Unknown roles are a programming error; use `lookup` to check.
    public func namespace(_ role: String) -> NetworkNamespace {
        precondition(spec.roles.contains(role), "\(NetLabError.unknownRole(role, known: spec.roles))")
        return NetworkNamespace(unopenedNamed: "\(prefix)-\(role)")
    }

    public func lookup(_ role: String) throws(NetLabError) -> NetworkNamespace {
        guard spec.roles.contains(role) else { throw .unknownRole(role, known: spec.roles) }
        return NetworkNamespace(unopenedNamed: "\(prefix)-\(role)")
    }

    public func container(_ name: String) -> ContainerSpec? {
        spec.containers.first { $0.name == name }
    }

    public func external(_ name: String) -> ExternalSpec? {
        spec.externals.first { $0.name == name }
    }

    // MARK: Running things inside

    /// Runs `arguments` in a role's namespace (nsenter --net) and throws unless it exits 0.
    @discardableResult
    public func run(
        in role: String, _ arguments: [String], input: String? = nil,
        timeout: Duration = .seconds(30)
    ) throws(NetLabError) -> CommandResult {
        let namespace = try lookup(role)
        do {
            return try ProcessRunner.runChecked(namespace.command(arguments, input: input, timeout: timeout))
        } catch {
            throw .command(error)
        }
    }

    /// Runs iproute2 batch lines (`ip -n NS -batch -`) in a role's namespace.
    public func ip(in role: String, _ lines: [String]) throws(NetLabError) {
        try Self.batch(in: try lookup(role), lines)
    }

    /// Starts a long-running process in a role's namespace; it is stopped by
    /// `teardown` (and by the exit safety net).
    public func startProcess(in role: String, _ arguments: [String], captureOutput: Bool = false) throws(NetLabError)
        -> BackgroundProcess
    {
        let namespace = try lookup(role)
        let process: BackgroundProcess
        do {
            process = try BackgroundProcess(Command(namespace.nsenter(arguments)), captureOutput: captureOutput)
        } catch { throw .command(error) }
        let accepted = state.withLock { state -> Bool in
            if state.tornDown { return false }
            state.processes.append(process)
            return true
        }
        if !accepted {
            process.stop()
            throw .invalidSpec("topology \(prefix) is torn down; cannot start `\(arguments.joined(separator: " "))`")
        }
        return process
    }

    /// Starts `bpfnet-probe serve` in a role's namespace and waits until every
    /// socket listens. The server's name defaults to the role.
    @discardableResult
    public func startServer(
        in role: String, tcp: [UInt16] = [], udp: [UInt16] = [], name: String? = nil,
        probe: ProbeRunner? = nil
    ) throws(NetLabError) -> BackgroundProcess {
        let runner: ProbeRunner
        if let probe { runner = probe } else { runner = try ProbeRunner() }
        let process = try startProcess(
            in: role, runner.serveArguments(tcp: tcp, udp: udp, name: name ?? role),
            captureOutput: true)
        do {
            _ = try process.waitForLine(prefix: "ready", timeout: .seconds(10))
        } catch {
            process.stop()
            throw error
        }
        return process
    }
}

// MARK: - Probing

extension Topology {
    /// The address that stands for a role: a container's address, an
    /// external's primary address, the bridge address for "host".
    public func address(of role: String) throws(NetLabError) -> IPv4Address {
        if role == TopologySpec.hostRole { return spec.bridge.address.address }
        if let network = spec.networks.first(where: { $0.name == role }) { return network.address.address }
        if let container = container(role) { return container.address }
        if let external = external(role) { return external.addresses[0].address }
        throw .unknownRole(role, known: spec.roles)
    }

    /// A probe from one role to another role's address (see `address(of:)`).
    public func probe(
        from source: String, to target: String, _ kind: Probe.Kind, sourcePort: UInt16? = nil,
        sourceAddress: IPv4Address? = nil, size: Int? = nil,
        timeout: Duration = Probe.defaultTimeout
    ) throws(NetLabError) -> Probe {
        try probe(
            from: source, to: address(of: target), kind, sourcePort: sourcePort, sourceAddress: sourceAddress,
            size: size, timeout: timeout, label: "\(source) → \(target)")
    }

    /// A probe from one role to any address; labelled "source → address" unless told otherwise.
    public func probe(
        from source: String, to address: IPv4Address, _ kind: Probe.Kind, sourcePort: UInt16? = nil,
        sourceAddress: IPv4Address? = nil, size: Int? = nil,
        timeout: Duration = Probe.defaultTimeout, label: String? = nil
    ) throws(NetLabError) -> Probe {
        Probe(
            from: try lookup(source), to: address, kind, sourcePort: sourcePort, sourceAddress: sourceAddress,
            size: size, timeout: timeout, label: label ?? "\(source) → \(address)")
    }
}

extension TopologySpec {
    /// A Docker-like host for tests and the demo: `docker0` at .1 of
    /// `subnet`, containers at .2, .3, … with hostInterface "veth<name>", and
    /// optionally one external "ext" on ext0 (host 198.51.100.1/24, external
    /// 198.51.100.2/24 plus 203.0.113.2/32 as a second source address).
    public static func dockerLike(
        containers names: [String], subnet: IPv4CIDR = IPv4CIDR("10.88.0.0/16")!,
        external: Bool = true
    ) -> TopologySpec {
        let base = subnet.address.value
        let containers = names.enumerated().map { index, name in
            ContainerSpec(name: name, address: IPv4Address(base + UInt32(index) + 2))
        }
        var externals: [ExternalSpec] = []
        if external {
            externals.append(
                ExternalSpec(
                    name: "ext", hostInterface: "ext0", hostAddress: IPv4InterfaceAddress("198.51.100.1/24")!,
                    addresses: [IPv4InterfaceAddress("198.51.100.2/24")!, IPv4InterfaceAddress("203.0.113.2/32")!]))
        }
        let bridgeAddress = IPv4InterfaceAddress(address: IPv4Address(base + 1), prefixLength: subnet.prefixLength)!
        return TopologySpec(
            bridge: BridgeSpec(address: bridgeAddress),
            containers: containers, externals: externals)
    }
}
