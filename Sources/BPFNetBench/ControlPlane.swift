// SPDX-License-Identifier: Apache-2.0
//
// Fixtures for measuring the control plane rather than packets: the bench
// host's policy with N links (and M allowed sources), compiled against
// synthetic host facts (no interfaces needed), and bpfnet's real maps pinned
// on a private bpffs to write it into. Used by `bpfnet bench micro` and by
// the package-benchmark suite in Benchmarks/.

import BPF
import BPFNetCore
import BPFNetDataplane
import Foundation
import Logging
import SystemPackage

public enum ControlPlaneFixture {
    /// The ext interface of the fixture policy; `facts` maps it to `extIfindex`.
    public static let extInterface = "ext0"
    /// A published port on the receiver (tcp), for the ext program.
    public static let publishedPort: UInt16 = 8080
    /// Sources the fixture's allow-list admits start here (/32 each).
    public static let firstAllowedSource = IPv4Address(100, 64, 0, 1)
    /// An admitted source for crafted packets (always in the list).
    public static let admittedSource = IPv4Address(203, 0, 113, 2)

    /// The bench host's policy with `links` links (icc=false), the receiver
    /// publishing 8080/tcp, and `allowedSources` /32 sources (plus
    /// 203.0.113.0/24) admitted on ext0.
    public static func policy(
        links: Int, allowedSources: Int = 0, portHook: PortHook = .tc,
        fastPath: Bool = false
    ) -> Policy {
        // Fast path off by default: the figures are the policy's cost, as for
        // the bpfnet-tc/-xdp variants (delivery is the fast-path variant's business).
        var policy = BenchWorkload(maxLinks: links, flows: 1).policy(
            links: links, portHook: portHook, fastPath: fastPath)
        if let index = policy.containers.firstIndex(where: { $0.name == BenchWorkload.receiverName }) {
            policy.containers[index].published = [
                PublishedPort(hostPort: publishedPort, containerPort: publishedPort, proto: .tcp)
            ]
        }
        var sources = [IPv4CIDR(address: admittedSource, prefixLength: 24)!]
        sources += (0..<allowedSources).map {
            IPv4CIDR(address: IPv4Address(firstAllowedSource.value + UInt32($0)), prefixLength: 32)!
        }
        policy.extInterfaces = [ExternalInterface(name: extInterface, allowSources: sources)]
        return policy
    }

    /// Host facts without a host: the bridge at 10.88.0.1/16, every port a
    /// made-up ifindex, ext0 = `extIfindex` (1 is the loopback device, which
    /// is what a test run without a context reports as its ingress interface).
    public static func facts(for policy: Policy, extIfindex: UInt32 = 1) -> HostFacts {
        var interfaces: [String: UInt32] = [extInterface: extIfindex]
        for (index, container) in policy.containers.enumerated() {
            interfaces[container.port] = 1000 + UInt32(index)
        }
        let bridge = BenchWorkload.bridgeAddress
        return HostFacts(
            bridgeIfindex: 2,
            bridgeAddress: IPv4InterfaceAddress(address: bridge.address, prefixLength: bridge.prefixLength),
            interfaces: interfaces)
    }

    /// PolicyCompiler.compile against `facts(for:)`.
    public static func compile(_ policy: Policy, extIfindex: UInt32 = 1) throws -> MapState {
        try PolicyCompiler.compile(policy, facts: facts(for: policy, extIfindex: extIfindex))
    }
}

/// bpfnet's objects loaded with their maps pinned on a private bpffs (under
/// /tmp, unmounted by `close()` or the safety net): the kernel maps the
/// control plane writes, without attaching anything anywhere. Needs root.
public final class PrivateDataplaneMaps {
    public let pinPath: FilePath
    private let directory: String
    private var loaded: LoadedDataplane?

    public init() throws {
        BenchSafetyNet.install()
        directory = try BenchSafetyNet.makeDirectory(prefix: "bpfnet-maps")
        pinPath = FilePath(directory).appending("pins")
        BenchSafetyNet.register(mount: pinPath)
        do {
            loaded = try LoadedDataplane.load(
                pinPath: pinPath,
                logger: Logger(label: "bpfnet.bench") { _ in SwiftLogNoOpLogHandler() })
        } catch {
            BenchSafetyNet.unmount(pinPath)
            BenchSafetyNet.removeDirectory(directory)
            throw error
        }
    }

    deinit { close() }

    public var dataplane: LoadedDataplane {
        guard let loaded else { preconditionFailure("PrivateDataplaneMaps used after close()") }
        return loaded
    }

    /// Reads what the maps hold, diffs it against `desired` (the reconciler)
    /// and writes the changes, one map update or delete each. Returns how
    /// many writes it made.
    @discardableResult
    public func apply(_ desired: MapState) throws -> Int {
        var writer = dataplane.maps
        let changes = try MapState(reading: writer).changes(to: desired)
        try writer.apply(changes)
        return changes.count
    }

    /// Writes `changes` as they are (no read-back, no diff).
    public func write(_ changes: [MapChange]) throws {
        var writer = dataplane.maps
        try writer.apply(changes)
    }

    /// Empties every map again.
    public func clear() throws {
        try apply(.empty)
    }

    /// Closes the objects, unmounts the bpffs and removes the directory.
    public func close() {
        guard loaded != nil else { return }
        loaded = nil
        BenchSafetyNet.unmount(pinPath)
        BenchSafetyNet.removeDirectory(directory)
    }
}
