// SPDX-License-Identifier: Apache-2.0
//
// From the containers the agent follows to the policy the dataplane must
// enforce. Links are recomputed from the containers that run now (see
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

/// A container the agent follows: Docker's answer at its last inspect and its bridge port.
public struct TrackedContainer: Hashable, Sendable {
    public var container: DockerContainer
    /// The host-side veth; nil when the lookup failed (`portProblem` says why).
    public var port: String?
    public var portProblem: String?

    public init(container: DockerContainer, port: String?, portProblem: String? = nil) {
        self.container = container
        self.port = port
        self.portProblem = portProblem
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
    ///   - settings: every setting but containers and links, the bridge already Docker's.
    ///   - bridgeAddress: the bridge's address on the host, for the checks that need it.
    ///   - portExists: whether an interface (a bridge port, an external
    ///     interface) exists right now.
    public static func build(
        settings: Policy, containers: [TrackedContainer],
        bridgeAddress: IPv4InterfaceAddress?,
        portExists: (String) -> Bool
    ) -> DesiredPolicy {
        var result = buildWithContainers(
            settings: settings, containers: containers, bridgeAddress: bridgeAddress, portExists: portExists)
        let missing = settings.extInterfaces.map(\.name).filter { !portExists($0) }
        if !missing.isEmpty {
            result.policy.extInterfaces.removeAll { missing.contains($0.name) }
            result.missingExtInterfaces = missing
        }
        return result
    }

    private static func buildWithContainers(
        settings: Policy, containers: [TrackedContainer],
        bridgeAddress: IPv4InterfaceAddress?,
        portExists: (String) -> Bool
    ) -> DesiredPolicy {
        var skipped: [DockerSkippedContainer] = []
        var candidates: [DockerContainer] = []
        var ports: [String: String] = [:]
        for tracked in containers.sorted(by: { $0.container.id < $1.container.id })
        where tracked.container.isRunningOnDefaultBridge {
            let container = tracked.container
            guard let port = tracked.port else {
                skipped.append(
                    DockerSkippedContainer(
                        id: container.id, name: container.name,
                        reason: tracked.portProblem ?? "bridge port unknown"))
                continue
            }
            guard portExists(port) else {
                skipped.append(
                    DockerSkippedContainer(
                        id: container.id, name: container.name,
                        reason: "its bridge port \(port) is gone (the container is stopping?)"))
                continue
            }
            ports[container.id] = port
            candidates.append(container)
        }

        // Each round drops the containers the validator names; a second round
        // is needed only when a drop uncovers nothing new, so this ends quickly.
        for _ in 0..<4 {
            let snapshot = DockerPolicyTranslator.snapshot(of: candidates, ports: ports)
            let policy = snapshot.applied(to: settings)
            let problems = policy.normalized().problems(bridgeAddress: bridgeAddress)
            let offenders = Self.offendingContainers(problems, in: policy)
            if problems.isEmpty || offenders.isEmpty {
                return DesiredPolicy(policy: policy, skipped: skipped + snapshot.skipped)
            }
            for (name, reasons) in offenders.sorted(by: { $0.key < $1.key }) {
                for container in candidates where container.name == name {
                    skipped.append(
                        DockerSkippedContainer(id: container.id, name: name, reason: reasons.joined(separator: "; ")))
                }
                candidates.removeAll { $0.name == name }
            }
        }
        let snapshot = DockerPolicyTranslator.snapshot(of: candidates, ports: ports)
        return DesiredPolicy(policy: snapshot.applied(to: settings), skipped: skipped + snapshot.skipped)
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
