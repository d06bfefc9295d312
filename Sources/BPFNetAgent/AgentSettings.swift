// SPDX-License-Identifier: Apache-2.0
//
// The host settings `bpfnet run` enforces (icc, forward policy, ip_forward,
// port hook, external interfaces and their allow-lists) and how they meet
// what Docker says about its default bridge.
//
// The bridge: Docker decides. Its name comes from `GET /networks/bridge`
// (`com.docker.network.bridge.name`, normally docker0); the bridge's address
// and subnet are read from the interface itself by the dataplane, and Docker's
// IPAM subnet is only cross-checked. An operator who names a bridge (`bridge:`
// in the file or `--bridge`) pins it: when Docker's bridge is a different one,
// `bpfnet run` refuses to start, because policing a bridge the containers are
// not on would police nothing.

import BPFNetCore
import DockerWatcher
import Foundation
import Yams

/// Something in the settings that cannot work with this Docker daemon.
public struct AgentConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public struct AgentSettings: Hashable, Sendable {
    /// Every setting but the containers and links (which are empty).
    public var policy: Policy
    /// The bridge the operator named (file or `--bridge`); nil: take Docker's.
    public var requiredBridge: String?

    public init(policy: Policy, requiredBridge: String? = nil) {
        var settings = policy
        settings.containers = []
        settings.links = []
        self.policy = settings
        self.requiredBridge = requiredBridge
    }

    /// Reads a settings-only policy file (containers or links in it are an
    /// error saying so) and applies the command-line overrides.
    /// - Throws: `PolicyFileError` or `PolicyValidationError` (both bad input).
    public static func load(configFile: String?, overrides: PolicyOverrides) throws -> AgentSettings {
        var policy = Policy()
        var fileBridge: String?
        if let configFile {
            policy = try PolicyFile.load(contentsOf: configFile, kind: .settingsOnly)
            if namesBridge(fileAt: configFile) { fileBridge = policy.bridge }
        }
        policy = try overrides.apply(to: policy)
        // The file was validated; what the command line changed is checked here.
        let problems = policy.problems(bridgeAddress: nil)
        guard problems.isEmpty else { throw PolicyValidationError(problems: problems) }
        return AgentSettings(policy: policy, requiredBridge: overrides.bridge ?? fileBridge)
    }

    /// Whether the file sets `bridge` itself (the parsed policy cannot tell a
    /// written "docker0" from the default).
    static func namesBridge(fileAt path: String) -> Bool {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        return namesBridge(yaml: text)
    }

    static func namesBridge(yaml: String) -> Bool {
        guard let root = try? Yams.compose(yaml: yaml), case .mapping(let mapping) = root else { return false }
        return mapping.contains { $0.key.string == "bridge" }
    }

    /// The policy settings for the daemon's default bridge.
    /// - Throws: `AgentConfigurationError` when the operator pinned another bridge.
    public func settings(for network: DockerBridgeNetwork) throws(AgentConfigurationError) -> Policy {
        if let requiredBridge, requiredBridge != network.bridgeName {
            throw AgentConfigurationError(
                "bridge \(requiredBridge) was given (policy file or --bridge) but Docker's default bridge network is "
                    + "\(network.bridgeName) (GET /networks/bridge, com.docker.network.bridge.name); "
                    + "remove the bridge setting to follow Docker, or set it to \(network.bridgeName)")
        }
        var result = policy
        result.bridge = network.bridgeName
        return result
    }
}
