// SPDX-License-Identifier: Apache-2.0
//
// The agent's bridges: Docker's bridge networks (read at every session's
// start, every resync and after a network create or destroy) and the ports
// that join any of their bridges, which get the port program at once.

import BPFNetCore
import BPFNetDataplane
import DockerWatcher
import Foundation
import Logging

extension DockerAgent {
    // MARK: Bridge ports

    /// Gives every port that joins the bridge the port program at once, as
    /// an unknown port until Docker's start event names its container (the
    /// guard holds a port that has no program yet; this makes that moment
    /// short). Bursts coalesce: one apply attaches every port that joined.
    func followBridgePorts() async {
        guard let events = host.bridgePortEvents() else {
            logger.info("no link notifications here: new bridge ports get the port program with the next apply")
            return
        }
        for await event in events {
            switch event {
            case .joined(let port, let bridge):
                guard policedBridges.contains(bridge) else { continue }
                logger.debug("\(port) joined \(bridge): attaching the port program")
            case .appeared(let name):
                guard reporter.missingExtInterfaces.contains(name) else { continue }
                logger.notice("external interface \(name) appeared: applying the policy with it")
                needsApply = true
                if let wake { wake.yield() } else { try? await applyDesired(reason: "\(name) appeared", starts: [:]) }
                continue
            case .lost:
                logger.warning("link notifications were lost: attaching to every bridge port again")
            }
            portsJoined = true
            // Within a session the worker does it, between its other rounds;
            // while Docker is away, right here.
            if let wake { wake.yield() } else { await attachJoinedPorts() }
        }
    }

    /// Every bridge the agent polices or is about to: the default bridge and each bridge
    /// network's, applied, being applied, or known from Docker.
    var policedBridges: Set<String> {
        var bridges = Set(lastApplied?.bridges ?? []).union(applyingBridges)
        if let bridge = effectiveSettings?.bridge { bridges.insert(bridge) }
        bridges.formUnion(dockerNetworks.map(\.bridgeName))
        return bridges
    }

    /// Applies the policy in force again: the dataplane attaches the port
    /// program to every bridge port that lacks it and changes nothing else.
    func attachJoinedPorts() async {
        guard portsJoined, let policy = lastApplied else { return }
        portsJoined = false
        let started = clock.now
        do {
            try await dataplane.apply(policy)
            reporter.statistics.portApplies += 1
            logger.debug("new bridge ports attached in \(Self.format(clock.now - started))")
        } catch {
            // Most often the port is gone again; the next apply attaches whatever is left.
            logger.warning(
                "attaching the port program to new bridge ports failed: \(error); retrying with the next apply")
            needsApply = true
        }
    }

    func build(_ settings: Policy) -> DesiredPolicy {
        let containers = Array(tracker.containers.values)
        let existing = host.existingInterfaces(
            among: containers.flatMap(\.ports.values) + settings.extInterfaces.map(\.name)
                + dockerNetworks.map(\.bridgeName))
        var networkAddresses: [String: IPv4InterfaceAddress] = [:]
        for network in dockerNetworks where !network.isDefaultBridge {
            networkAddresses[network.name] = host.ipv4Address(of: network.bridgeName)
        }
        return DesiredPolicy.build(
            settings: settings, networks: dockerNetworks, containers: containers,
            bridgeAddress: host.ipv4Address(of: settings.bridge), networkAddresses: networkAddresses,
            portExists: { existing.contains($0) })
    }

    /// Whether the network of a network event is one the agent holds: by ID, or
    /// by name when the event carries no ID.
    func isKnownNetwork(_ event: DockerEvent) -> Bool {
        if !event.actorID.isEmpty { return dockerNetworks.contains { $0.id == event.actorID } }
        return dockerNetworks.contains { $0.name == event.networkName }
    }

    /// Reads Docker's bridge networks again. A network whose bridge is the default
    /// bridge's (a daemon that lists it under another name) is left out.
    func readNetworks() async throws {
        networksChanged = false
        let networks = try await docker.bridgeNetworks()
        let defaultBridge = effectiveSettings?.bridge
        let kept = networks.filter { $0.isDefaultBridge || $0.bridgeName != defaultBridge }
        let before = Set(dockerNetworks.filter { !$0.isDefaultBridge }.map(\.name))
        let after = Set(kept.filter { !$0.isDefaultBridge }.map(\.name))
        if before != after {
            let added = after.subtracting(before).sorted()
            let removed = before.subtracting(after).sorted()
            let text =
                "bridge networks: \(after.isEmpty ? "none but the default bridge" : after.sorted().joined(separator: ", "))"
                + (added.isEmpty ? "" : "; new: \(added.joined(separator: ", "))")
                + (removed.isEmpty ? "" : "; removed: \(removed.joined(separator: ", "))")
            logger.info("\(text)")
        }
        dockerNetworks = kept
    }

}
