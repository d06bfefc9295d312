// SPDX-License-Identifier: Apache-2.0
//
// Command-line options override the policy file (docs/policy-file.md). The CLI
// fills a PolicyOverrides from its options and applies it to the file's policy.

/// The command-line options that override the policy file; nil/absent = not given.
///
/// - `extInterfaces` (`--ext-if`, repeatable) replaces the file's list of
///   external interfaces. An interface that the file also names keeps the
///   file's `allowSources`; a new one admits every source.
/// - `allowSources` (`--allow-source`, repeatable) replaces the allow-list of
///   every external interface (after `extInterfaces` was applied).
public struct PolicyOverrides: Hashable, Sendable {
    public var bridge: String?
    public var icc: Bool?
    public var ipForward: Bool?
    public var forwardPolicy: ForwardPolicy?
    public var portHook: PortHook?
    public var fastPath: Bool?
    public var nat: NATMode?
    public var extInterfaces: [String]?
    public var allowSources: [SourcePrefix]?

    public init(
        bridge: String? = nil, icc: Bool? = nil, ipForward: Bool? = nil,
        forwardPolicy: ForwardPolicy? = nil, portHook: PortHook? = nil,
        extInterfaces: [String]? = nil, allowSources: [SourcePrefix]? = nil, fastPath: Bool? = nil,
        nat: NATMode? = nil
    ) {
        self.fastPath = fastPath
        self.nat = nat
        self.bridge = bridge
        self.icc = icc
        self.ipForward = ipForward
        self.forwardPolicy = forwardPolicy
        self.portHook = portHook
        self.extInterfaces = extInterfaces
        self.allowSources = allowSources
    }

    public var isEmpty: Bool { self == PolicyOverrides() }

    /// The policy with these overrides applied. Throws when `--allow-source`
    /// is given but there is no external interface to apply it to: silently
    /// dropping a source restriction would leave the host open.
    public func apply(to policy: Policy) throws(PolicyValidationError) -> Policy {
        var result = policy
        if let bridge { result.bridge = bridge }
        if let icc { result.icc = icc }
        if let ipForward { result.ipForward = ipForward }
        if let forwardPolicy { result.forwardPolicy = forwardPolicy }
        if let portHook { result.portHook = portHook }
        if let fastPath { result.fastPath = fastPath }
        if let nat { result.nat = nat }
        if let extInterfaces {
            let fromFile = Dictionary(
                policy.extInterfaces.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            var seen = Set<String>()
            result.extInterfaces = extInterfaces.filter { seen.insert($0).inserted }.map { name in
                fromFile[name] ?? ExternalInterface(name: name)
            }
        }
        if let allowSources {
            guard !result.extInterfaces.isEmpty || allowSources.isEmpty else {
                throw PolicyValidationError(problems: [
                    PolicyProblem(
                        path: "--allow-source",
                        message:
                            "\(allowSources.map(\.description).joined(separator: ", ")) given but there is no external "
                            + "interface to apply it to; add --ext-if NAME or list extInterfaces in the policy file")
                ])
            }
            for index in result.extInterfaces.indices {
                result.extInterfaces[index].allowSources = allowSources.compactMap(\.v4)
                result.extInterfaces[index].allowSourcesIPv6 = allowSources.compactMap(\.v6)
            }
        }
        return result
    }
}
