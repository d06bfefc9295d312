// SPDX-License-Identifier: Apache-2.0
//
// From Docker's bridge networks and the containers the agent follows to the
// policy the dataplane must enforce: one `BridgeNetwork` per user-defined
// network (present as soon as the network exists, before its first container),
// one `Container` per endpoint on a bridge network. Links are recomputed from the containers that run now (see
// DockerPolicyTranslator): a stopped child takes its rules with it, a
// restarted child's rules follow its new address.
//
// A policy is applied whole or not at all, so one container that cannot be
// enforced (its veth vanished while it stops, an address two inspects taken at
// different moments both claim) must not hold every other change back: such
// containers are left out, named, and picked up again by the next event or
// resync.

import BPFNetCore
import DockerWatcher

/// A container the agent follows: Docker's answer at its last inspect and its bridge ports.
public struct TrackedContainer: Hashable, Sendable {
    public var container: DockerContainer
    /// The host-side veth of each endpoint, by network name; empty when the lookup failed
    /// (`portProblem` says why).
    public var ports: [String: String]
    public var portProblem: String?

    public init(container: DockerContainer, ports: [String: String], portProblem: String? = nil) {
        self.container = container
        self.ports = ports
        self.portProblem = portProblem
    }

    /// On the default bridge alone.
    public init(container: DockerContainer, port: String?, portProblem: String? = nil) {
        self.init(
            container: container, ports: port.map { [dockerDefaultBridgeNetwork: $0] } ?? [:], portProblem: portProblem)
    }

    /// The port on the default bridge.
    public var port: String? {
        get { ports[dockerDefaultBridgeNetwork] }
        set { ports[dockerDefaultBridgeNetwork] = newValue }
    }
}

public struct DesiredPolicy: Hashable, Sendable {
    public var policy: Policy
    /// Running bridge containers left out, with why.
    public var skipped: [DockerSkippedContainer]
    /// External interfaces of the settings that do not exist (yet): left out
    /// so that everything else is enforced; the agent applies again when one
    /// appears, and until then the guard holds traffic routed in through it.
    public var missingExtInterfaces: [String] = []

    /// - Parameters:
    ///   - settings: every setting but networks, containers and links, the bridge already Docker's.
    ///   - networks: Docker's bridge networks (the default one may be among them).
    ///   - bridgeAddress: the bridge's address on the host, for the checks that need it.
    ///   - networkAddresses: each user-defined network's bridge address, by network name.
    ///   - portExists: whether an interface (a bridge port, an external
    ///     interface) exists right now.
    public static func build(
        settings: Policy, networks: [DockerBridgeNetwork] = [], containers: [TrackedContainer],
        bridgeAddress: IPv4InterfaceAddress?, networkAddresses: [String: IPv4InterfaceAddress] = [:],
        portExists: (String) -> Bool
    ) -> DesiredPolicy {
        var result = buildWithContainers(
            settings: settings, networks: networks, containers: containers, bridgeAddress: bridgeAddress,
            networkAddresses: networkAddresses, portExists: portExists)
        let missing = settings.extInterfaces.map(\.name).filter { !portExists($0) }
        if !missing.isEmpty {
            result.policy.extInterfaces.removeAll { missing.contains($0.name) }
            result.missingExtInterfaces = missing
        }
        return result
    }

    private static func buildWithContainers(
        settings: Policy, networks: [DockerBridgeNetwork], containers: [TrackedContainer],
        bridgeAddress: IPv4InterfaceAddress?, networkAddresses: [String: IPv4InterfaceAddress],
        portExists: (String) -> Bool
    ) -> DesiredPolicy {
        var skipped: [DockerSkippedContainer] = []
        var candidates: [DockerContainer] = []
        var ports: [String: [String: String]] = [:]
        // A network whose bridge is gone (removed between the list and now) is left out
        // with its endpoints; the network's destroy event follows.
        var networks = networks.filter { $0.isDefaultBridge || portExists($0.bridgeName) }
        let known = DockerPolicyTranslator.bridgeNetworkNames(networks)
        for tracked in containers.sorted(by: { $0.container.id < $1.container.id })
        where tracked.container.running {
            var container = tracked.container
            // Endpoints on networks of other drivers (host, macvlan) are not the policy's.
            container.networks = container.networks.filter { known.contains($0.key) }
            guard !container.networks.isEmpty else { continue }
            guard !tracked.ports.isEmpty else {
                skipped.append(
                    DockerSkippedContainer(
                        id: container.id, name: container.name,
                        reason: tracked.portProblem ?? "bridge port unknown"))
                continue
            }
            for (network, port) in tracked.ports.sorted(by: { $0.key < $1.key })
            where container.networks[network] != nil && !portExists(port) {
                let on = network == dockerDefaultBridgeNetwork ? "" : "on network \(network): "
                skipped.append(
                    DockerSkippedContainer(
                        id: container.id, name: container.name,
                        reason: on + "its bridge port \(port) is gone (the container is stopping?)"))
                container.networks.removeValue(forKey: network)
            }
            guard !container.networks.isEmpty else { continue }
            ports[container.id] = tracked.ports
            candidates.append(container)
        }

        // Each round drops the containers the validator names; a second round
        // is needed only when a drop uncovers nothing new, so this ends quickly.
        for _ in 0..<4 {
            let snapshot = DockerPolicyTranslator.snapshot(of: candidates, networks: networks, endpointPorts: ports)
            let policy = snapshot.applied(to: settings)
            let problems = policy.normalized().problems(
                bridgeAddress: bridgeAddress, networkAddresses: networkAddresses)
            let offenders = Self.offendingContainers(problems, in: policy)
            let badNetworks = Self.offendingNetworks(problems, in: policy)
            if problems.isEmpty || (offenders.isEmpty && badNetworks.isEmpty) {
                return DesiredPolicy(policy: policy, skipped: skipped + snapshot.skipped)
            }
            // A network the validator refuses (a bridge name another network has) is left
            // out with its endpoints, not every other network with it.
            for (name, reasons) in badNetworks.sorted(by: { $0.key < $1.key }) {
                networks.removeAll { $0.name == name }
                for index in candidates.indices where candidates[index].networks.removeValue(forKey: name) != nil {
                    let container = candidates[index]
                    skipped.append(
                        DockerSkippedContainer(
                            id: container.id, name: container.name,
                            reason: "on network \(name): the network is left out: " + reasons.joined(separator: "; ")))
                }
                candidates.removeAll { $0.networks.isEmpty }
            }
            for (name, reasons) in offenders.sorted(by: { $0.key < $1.key }) {
                for container in candidates where container.name == name {
                    skipped.append(
                        DockerSkippedContainer(id: container.id, name: name, reason: reasons.joined(separator: "; ")))
                }
                candidates.removeAll { $0.name == name }
            }
        }
        let snapshot = DockerPolicyTranslator.snapshot(of: candidates, networks: networks, endpointPorts: ports)
        return DesiredPolicy(policy: snapshot.applied(to: settings), skipped: skipped + snapshot.skipped)
    }

    /// Network name → problems, for problems at `networks[N]...` paths.
    static func offendingNetworks(_ problems: [PolicyProblem], in policy: Policy) -> [String: [String]] {
        var result: [String: [String]] = [:]
        for problem in problems where problem.path.hasPrefix("networks[") {
            let digits = problem.path.dropFirst("networks[".count).prefix { $0.isNumber }
            guard let index = Int(digits), policy.networks.indices.contains(index) else { continue }
            result[policy.networks[index].name, default: []].append(problem.message)
        }
        return result
    }

    /// Container name → problems, for problems at `containers[N]...` paths.
    static func offendingContainers(_ problems: [PolicyProblem], in policy: Policy) -> [String: [String]] {
        var result: [String: [String]] = [:]
        for problem in problems where problem.path.hasPrefix("containers[") {
            let digits = problem.path.dropFirst("containers[".count).prefix { $0.isNumber }
            guard let index = Int(digits), policy.containers.indices.contains(index) else { continue }
            result[policy.containers[index].name, default: []].append(problem.message)
        }
        return result
    }
}
