// SPDX-License-Identifier: Apache-2.0
//
// The agent's parts on their own: settings file handling, the policy
// builder, the lock and state files, the in-memory dataplane.

import BPFNetCore
import BPFNetShared
import DockerWatcher
import Foundation
import LinuxNet
import SystemPackage
import XCTest

@testable import BPFNetAgent
@testable import BPFNetDataplane

final class AgentSettingsTests: XCTestCase {
    private func write(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bpfnet-run-\(UUID().uuidString).yaml")
            .path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testSettingsFileWithContainersOrLinksIsRefusedSayingWhy() throws {
        let path = try write(
            """
            icc: false
            containers:
              - {name: web, ip: 172.17.0.2, mac: 02:42:ac:11:00:02, port: vethweb}
            links:
              - {parent: client, child: web}
            """)
        XCTAssertThrowsError(try AgentSettings.load(configFile: path, overrides: PolicyOverrides())) { error in
            let text = "\(error)"
            XCTAssertTrue(error is PolicyFileError, text)
            XCTAssertTrue(
                text.contains(
                    "containers: not allowed in this file: `bpfnet run` takes networks, containers, links and the bridges' IPv6 from Docker"
                ),
                text)
            XCTAssertTrue(text.contains("links: not allowed"), text)
            XCTAssertTrue(text.contains("\(path):2"), "names the line: \(text)")
        }
    }

    func testSettingsAndOverrides() throws {
        let path = try write(
            """
            icc: false
            forwardPolicy: accept
            extInterfaces:
              - {name: ext0, allowSources: [198.51.100.2/32]}
            """)
        let settings = try AgentSettings.load(configFile: path, overrides: PolicyOverrides(icc: true))
        XCTAssertTrue(settings.policy.icc, "the command line overrides the file")
        XCTAssertEqual(settings.policy.forwardPolicy, .accept)
        XCTAssertEqual(
            settings.policy.extInterfaces,
            [ExternalInterface(name: "ext0", allowSources: [IPv4CIDR("198.51.100.2/32")!])])
        XCTAssertNil(settings.requiredBridge, "no bridge named: Docker's is taken")
        let docker = DockerBridgeNetwork(id: "n", name: "bridge", bridgeName: "br-x")
        XCTAssertEqual(try settings.settings(for: docker).bridge, "br-x")

        XCTAssertEqual(
            try AgentSettings.load(configFile: try write("bridge: docker0\n"), overrides: PolicyOverrides())
                .requiredBridge,
            "docker0", "a bridge in the file pins it")
        XCTAssertEqual(
            try AgentSettings.load(configFile: path, overrides: PolicyOverrides(bridge: "br0")).requiredBridge, "br0")
        XCTAssertEqual(try AgentSettings.load(configFile: nil, overrides: PolicyOverrides()).policy, Policy())
        XCTAssertThrowsError(try AgentSettings(policy: Policy(), requiredBridge: "docker0").settings(for: docker)) {
            error in
            XCTAssertTrue("\(error)".contains("Docker's default bridge network is br-x"), "\(error)")
        }
        XCTAssertThrowsError(
            try AgentSettings.load(
                configFile: nil, overrides: PolicyOverrides(allowSources: [SourcePrefix("10.0.0.0/8")!]))
        )
        XCTAssertThrowsError(
            try AgentSettings.load(configFile: nil, overrides: PolicyOverrides(extInterfaces: ["docker0"]))
        ) { error in
            XCTAssertTrue(error is PolicyValidationError, "\(error)")
        }
    }
}

final class DesiredPolicyTests: XCTestCase {
    private func container(_ name: String, _ host: UInt8, links: [String] = [], exposed: [PortSpec] = [])
        -> TrackedContainer
    {
        let ip = IPv4Address(172, 17, 0, host)
        return TrackedContainer(
            container: DockerContainer(
                id: "id-\(name)", name: name, running: true, pid: Int32(host) + 1000,
                bridge: DockerBridgeEndpoint(ip: ip, prefixLength: 16, mac: MACAddress(dockerStyleFor: ip)),
                links: links.map { DockerLinkDeclaration(child: $0, parent: name, alias: $0) }, exposedPorts: exposed),
            port: "veth\(name)")
    }

    func testLinksOnlyBetweenEnforcedContainers() {
        let built = DesiredPolicy.build(
            settings: Policy(icc: false),
            containers: [
                container("web", 2, exposed: [PortSpec(80)]), container("client", 3, links: ["web", "gone"]),
            ],
            bridgeAddress: IPv4InterfaceAddress("172.17.0.1/16"), portExists: { _ in true })
        XCTAssertEqual(built.policy.containers.map(\.name), ["client", "web"])
        XCTAssertEqual(built.policy.links, [Link(parent: "client", child: "web", alias: "web")])
        XCTAssertTrue(built.skipped.isEmpty)
        XCTAssertFalse(built.policy.icc)
    }

    /// `bpfnet run`'s settings may name peer hosts (docs/policy-file.md): they
    /// reach the dataplane with Docker's containers.
    func testPeersOfTheSettingsAreKept() {
        var settings = Policy(icc: false)
        settings.peers = [
            Peer(name: "host2", address: IPv4Address(192, 168, 8, 1), subnets: [IPv4CIDR("172.18.0.0/16")!])
        ]
        settings.peerPolicy = .allow
        let built = DesiredPolicy.build(
            settings: settings, containers: [container("web", 2, exposed: [PortSpec(80)])],
            bridgeAddress: IPv4InterfaceAddress("172.17.0.1/16"), portExists: { _ in true })
        XCTAssertEqual(built.policy.peers, settings.peers)
        XCTAssertEqual(built.policy.peerPolicy, .allow)
        XCTAssertEqual(built.policy.containers.map(\.name), ["web"])
    }

    func testContainersThatCannotBeEnforcedAreLeftOutAlone() {
        var noPort = container("noport", 5)
        noPort.port = nil
        noPort.portProblem = "bridge port not found: pid gone"
        let built = DesiredPolicy.build(
            settings: Policy(),
            containers: [
                container("web", 2, exposed: [PortSpec(80)]), container("client", 3, links: ["web"]),
                container("vanished", 4), noPort,
                // The bridge's own address: the validator refuses it.
                container("bad", 1), container("dup", 3),
            ],
            bridgeAddress: IPv4InterfaceAddress("172.17.0.1/16"), portExists: { $0 != "vethvanished" })
        XCTAssertEqual(built.policy.containers.map(\.name), ["client", "web"])
        XCTAssertEqual(built.policy.links.count, 1)
        let reasons = Dictionary(built.skipped.map { ($0.name, $0.reason) }, uniquingKeysWith: { $0 + "; " + $1 })
        XCTAssertEqual(Set(reasons.keys), ["vanished", "noport", "bad", "dup"], "\(built.skipped)")
        XCTAssertTrue(reasons["vanished"]!.contains("vethvanished is gone"))
        XCTAssertTrue(reasons["noport"]!.contains("pid gone"))
        XCTAssertTrue(reasons["bad"]!.contains("bridge's own address"), reasons["bad"]!)
        XCTAssertTrue(reasons["dup"]!.contains("already held by"), reasons["dup"]!)
        XCTAssertTrue(built.policy.problems(bridgeAddress: IPv4InterfaceAddress("172.17.0.1/16")).isEmpty)
    }
}

final class AgentFilesTests: XCTestCase {
    private func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "bpfnet-agentfiles-\(UUID().uuidString)"
        ).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testNamesAreStablePerPinPath() throws {
        let a = AgentFiles(pinPath: "/sys/fs/bpf/bpfnet", directory: "/run/bpfnet")
        XCTAssertEqual(a.baseName, AgentFiles(pinPath: "/sys/fs/bpf/bpfnet/", directory: "/run/bpfnet").baseName)
        XCTAssertEqual(a.baseName, AgentFiles(pinPath: "/sys/fs/bpf/x/../bpfnet", directory: "/run/bpfnet").baseName)
        XCTAssertNotEqual(a.baseName, AgentFiles(pinPath: "/sys/fs/bpf/bpfnet2", directory: "/run/bpfnet").baseName)
        XCTAssertTrue(a.baseName.hasPrefix("agent-sys-fs-bpf-bpfnet-"), a.baseName)
        XCTAssertEqual(a.lockPath, "/run/bpfnet/\(a.baseName).lock")
        XCTAssertEqual(AgentFiles.fnv1a(""), "cbf29ce484222325")
    }

    func testLockDoesNotFollowASymlink() throws {
        let directory = try temporaryDirectory()
        let files = AgentFiles(pinPath: FilePath("/sys/fs/bpf/test-\(UUID().uuidString)"), directory: directory)
        let victim = directory + "/victim"
        XCTAssertTrue(FileManager.default.createFile(atPath: victim, contents: Data("keep\n".utf8)))
        XCTAssertEqual(symlink(victim, files.lockPath), 0)
        XCTAssertThrowsError(try AgentLock.acquire(files, dockerHost: "unix:///var/run/docker.sock")) { error in
            XCTAssertTrue((error as! AgentLockError).message.contains("symbolic link"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "keep\n", "the link's target was written")
    }

    func testLockRefusesASecondAgentAndNamesTheFirst() throws {
        let files = AgentFiles(
            pinPath: FilePath("/sys/fs/bpf/test-\(UUID().uuidString)"), directory: try temporaryDirectory())
        XCTAssertNil(files.runningAgentPID())
        let first = try AgentLock.acquire(files, dockerHost: "unix:///var/run/docker.sock")
        XCTAssertEqual(files.runningAgentPID(), getpid())
        // flock locks belong to the open file: a second open in the same process conflicts like another process would.
        XCTAssertThrowsError(try AgentLock.acquire(files, dockerHost: "unix:///other.sock")) { error in
            let lockError = error as! AgentLockError
            XCTAssertEqual(lockError.holder, getpid())
            XCTAssertTrue(
                lockError.message.contains(
                    "another `bpfnet run` (pid \(getpid())) already keeps the dataplane at \(files.pinPath)"),
                lockError.message)
            XCTAssertTrue(lockError.message.contains("another --pin-path"), lockError.message)
            XCTAssertEqual(lockError.dataplaneError, .busy(lockError.message))
        }
        // `load` and `unload` refuse while it runs.
        XCTAssertThrowsError(try files.refuseWhileAgentRuns(then: "load")) { error in
            XCTAssertTrue("\(error)".contains("stop it first (kill -TERM \(getpid())), then load"), "\(error)")
        }
        first.release()
        XCTAssertNil(files.runningAgentPID())
        XCTAssertNoThrow(try files.refuseWhileAgentRuns(then: "load"))
        let again = try AgentLock.acquire(files, dockerHost: "unix:///var/run/docker.sock")
        again.release()
    }

    func testStateRoundTripAndStatusMerge() throws {
        let files = AgentFiles(
            pinPath: FilePath("/sys/fs/bpf/test-\(UUID().uuidString)"), directory: try temporaryDirectory())
        XCTAssertNil(files.readState())
        let agent = DataplaneStatus.Agent(
            running: true, pid: 42, dockerHost: "unix:///d.sock", connected: true,
            lastSyncLatencyMs: 12.5, lastSyncContainer: "web", resyncs: 3)
        try files.writeState(agent)
        var read = try XCTUnwrap(files.readState())
        XCTAssertFalse(read.running, "nobody holds the lock")
        XCTAssertEqual(read.lastSyncLatencyMs, 12.5)
        let lock = try AgentLock.acquire(files, dockerHost: "unix:///d.sock")
        read = try XCTUnwrap(files.readState())
        XCTAssertTrue(read.running)
        XCTAssertEqual(read.pid, getpid())

        var status = DataplaneStatus(
            backend: "bpf", bridge: "docker0", icc: true, forwardPolicy: "drop", ipForward: true)
        let plain = try JSONSerialization.jsonObject(with: JSONEncoder().encode(status)) as! [String: Any]
        XCTAssertNil(plain["lastSyncLatencyMs"], "absent without an agent: old readers see the same document")
        XCTAssertNil(plain["agent"])
        status.addAgentState(from: files)
        let data = try JSONEncoder().encode(status)
        let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual(object["lastSyncLatencyMs"] as? Double, 12.5)
        XCTAssertEqual((object["agent"] as? [String: Any])?["lastSyncContainer"] as? String, "web")
        XCTAssertEqual(try JSONDecoder().decode(DataplaneStatus.self, from: data), status)
        lock.release()
        files.removeState()
        XCTAssertNil(files.readState())
    }
}

final class InMemoryDataplaneTests: XCTestCase {
    func testRecordsPoliciesAndWritesOnlyTheDifference() throws {
        let dataplane = InMemoryDataplane()
        let web = Container(
            name: "web", ip: IPv4Address("172.17.0.2")!, mac: MACAddress("02:42:ac:11:00:02")!,
            port: "vethweb", exposed: [PortSpec(80)])
        let client = Container(
            name: "client", ip: IPv4Address("172.17.0.3")!, mac: MACAddress("02:42:ac:11:00:03")!,
            port: "vethclient")
        let first = Policy(icc: false, containers: [web, client], links: [Link(parent: "client", child: "web")])
        try dataplane.apply(first)
        try dataplane.apply(first)
        XCTAssertEqual(dataplane.appliedPolicies, [first, first])
        XCTAssertFalse(dataplane.applications[0].changes.isEmpty)
        XCTAssertTrue(dataplane.applications[1].changes.isEmpty, "the same policy again writes nothing")
        let status = try dataplane.status()
        XCTAssertEqual(status.backend, "memory")
        XCTAssertEqual(status.links.map(\.ports), [["80/tcp"]])
        XCTAssertEqual(Set(status.containers.map(\.port)), ["vethweb", "vethclient"])

        dataplane.failNextApply()
        XCTAssertThrowsError(try dataplane.apply(Policy(icc: true, containers: [web])))
        XCTAssertEqual(dataplane.currentPolicy, first, "a failed apply leaves the last one in force")
        XCTAssertEqual(dataplane.failedApplies, 1)

        dataplane.setInterfaceFilter { $0 != "vethclient" }
        XCTAssertThrowsError(try dataplane.apply(first)) { error in
            XCTAssertTrue((error as? DataplaneError)?.isBadInput == true, "\(error)")
        }
        try dataplane.unload()
        XCTAssertNil(dataplane.currentPolicy)
        XCTAssertThrowsError(try dataplane.status())
    }
}

/// `--backend auto` as the agent drives it: one apply per Docker event.
final class AutoDataplaneReuseTests: XCTestCase {
    /// Counts what auto asks of its eBPF backend.
    private final class CountingDataplane: Dataplane, @unchecked Sendable {
        let backend = Backend.bpf
        let inner = InMemoryDataplane()
        var applies = 0
        var forgets = 0
        func apply(_ policy: Policy) throws {
            applies += 1
            try inner.apply(policy)
        }
        func status() throws -> DataplaneStatus { try inner.status() }
        func unload() throws { try inner.unload() }
        func forgetCachedState() { forgets += 1 }
    }

    /// Fails the applies whose numbers (1-based) are in `failing` with `error`.
    private final class FlakyDataplane: Dataplane, @unchecked Sendable {
        let backend = Backend.bpf
        let inner = InMemoryDataplane()
        let failing: Set<Int>
        let error: Error
        var applies = 0
        var forgets = 0
        init(failing: Set<Int>, error: Error) {
            self.failing = failing
            self.error = error
        }
        func apply(_ policy: Policy) throws {
            applies += 1
            if failing.contains(applies) { throw error }
            try inner.apply(policy)
        }
        func status() throws -> DataplaneStatus { try inner.status() }
        func unload() throws { try inner.unload() }
        func forgetCachedState() { forgets += 1 }
    }

    /// Once eBPF enforced a policy, a failed apply is retried, and a second
    /// failure is reported with eBPF still in place: never a switch to
    /// netfilter over a veth that vanished during an attach.
    func testAFailureAfterEBPFWorkedIsRetriedAndNeverSwitchesBackends() throws {
        let flaky = FlakyDataplane(failing: [2, 4, 5], error: DataplaneError.runtime("bpf: attaching to veth9: gone"))
        let auto = AutoDataplane(pinPath: FilePath("/nonexistent/bpfnet-auto-test")) { flaky }
        var policy = Policy(bridge: "docker0")
        try auto.apply(policy)  // 1
        policy.icc = false
        try auto.apply(policy)  // 2 fails, 3 retries
        XCTAssertEqual(auto.backend, .bpf)
        XCTAssertEqual(auto.bpfRetries, 1)
        XCTAssertEqual(flaky.forgets, 1, "the retry starts from the system, not the caches")
        XCTAssertEqual(flaky.inner.currentPolicy?.icc, false)
        policy.icc = true
        XCTAssertThrowsError(try auto.apply(policy)) { error in  // 4 and 5 fail
            XCTAssertTrue("\(error)".contains("does not leave a backend that worked"), "\(error)")
        }
        XCTAssertEqual(auto.backend, .bpf)
        XCTAssertEqual(flaky.inner.currentPolicy?.icc, false, "the last policy eBPF took stays")
        XCTAssertTrue(auto.unusedBackends.isEmpty)
    }

    /// Before eBPF ever worked, a transient error (the object is gone) is retried once.
    func testATransientFirstFailureIsRetried() throws {
        let flaky = FlakyDataplane(failing: [1], error: DataplaneError.notFound("bpf: no interface with index 9"))
        let auto = AutoDataplane(pinPath: FilePath("/nonexistent/bpfnet-auto-test")) { flaky }
        try auto.apply(Policy(bridge: "docker0"))
        XCTAssertEqual(auto.backend, .bpf)
        XCTAssertEqual(flaky.applies, 2)
        XCTAssertTrue(AutoDataplane.isTransient(DataplaneError.system("attach", errno: ENODEV)))
        XCTAssertFalse(AutoDataplane.isTransient(DataplaneError.permission("BPF_PROG_LOAD: not permitted")))
    }

    /// A fresh eBPF dataplane per apply would load and verify the programs and
    /// re-attach every port for each container start.
    func testOneEBPFDataplaneServesEveryApplyAndAResyncReachesIt() throws {
        var made: [CountingDataplane] = []
        let auto = AutoDataplane(pinPath: FilePath("/nonexistent/bpfnet-auto-test")) {
            let dataplane = CountingDataplane()
            made.append(dataplane)
            return dataplane
        }
        var policy = Policy(bridge: "docker0")
        try auto.apply(policy)
        policy.icc = false
        try auto.apply(policy)
        try auto.apply(policy)
        XCTAssertEqual(made.count, 1, "auto made a new eBPF dataplane for an apply")
        XCTAssertEqual(made.first?.applies, 3)
        XCTAssertEqual(auto.backend, .bpf)
        XCTAssertEqual(made.first?.inner.currentPolicy?.icc, false)

        auto.forgetCachedState()
        XCTAssertEqual(made.first?.forgets, 1, "a full resync must reach the backend's caches")
    }
}

/// When an apply may leave a fast-path interface as its record says it is.
final class FastPathRecordTests: XCTestCase {
    func testARecordCountsAsArrangedOnlyForTheSameDevicePeerAndRole() {
        let mac: [UInt8] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]
        let port = RouteNetlink.Link(index: 7, name: "veth1", address: mac, link: 12, linkNetnsid: 0)
        var napi = FastPathInterfaceRecord(peerIfindex: 12, mac: mac)
        napi.set(BPFNET_FP_IF_NAPI, true)
        XCTAssertTrue(FastPathInterfaces.isArranged(napi, as: .containerPort(fullChecksum: false), now: port))
        XCTAssertFalse(
            FastPathInterfaces.isArranged(napi, as: .containerPort(fullChecksum: true), now: port),
            "the XDP hook also needs full checksums at the peer")

        var otherPeer = port
        otherPeer.link = 13
        XCTAssertFalse(FastPathInterfaces.isArranged(napi, as: .containerPort(fullChecksum: false), now: otherPeer))
        var otherDevice = port
        otherDevice.address = [0x02, 0x42, 0xac, 0x11, 0x00, 0x03]
        XCTAssertFalse(
            FastPathInterfaces.isArranged(napi, as: .containerPort(fullChecksum: false), now: otherDevice),
            "a recycled ifindex is another device")
        XCTAssertFalse(
            FastPathInterfaces.isArranged(
                FastPathInterfaceRecord(peerIfindex: 12, mac: mac),
                as: .containerPort(fullChecksum: false), now: port),
            "without NAPI the arrangement is tried again")

        let uplink = RouteNetlink.Link(index: 3, name: "eth0", address: mac)
        XCTAssertTrue(FastPathInterfaces.isArranged(FastPathInterfaceRecord(mac: mac), as: .external, now: uplink))
    }
}

final class MapCapacityTests: XCTestCase {
    private func interfaces(_ range: Range<UInt32>) -> MapState {
        var state = MapState.empty
        for ifindex in range { state.extInterfaces[ifindex] = ExtInterfaceRecord() }
        return state
    }

    /// The reconciler adds before it deletes: the old entries and the new
    /// ones must fit at once, or the apply would fail half-way with the map full.
    func testOldAndNewEntriesMustFitTogether() throws {
        let capacity = UInt32(BPFNET_MAX_EXT_IFS)
        let old = interfaces(100..<(100 + capacity))
        let new = interfaces(1000..<(1000 + capacity))
        XCTAssertNoThrow(try MapCapacity.check(new), "the new policy fits on its own")
        XCTAssertNoThrow(try MapCapacity.check(new, replacing: new), "the same keys count once")
        XCTAssertThrowsError(try MapCapacity.check(new, replacing: old)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("bn_ext_ifs needs \(2 * capacity) entries but holds \(capacity)"), text)
            XCTAssertTrue(text.contains("old and new must fit together"), text)
            XCTAssertTrue(text.contains("the current rules stay in force"), text)
        }
        XCTAssertThrowsError(try MapCapacity.check(interfaces(0..<(capacity + 1)))) { error in
            XCTAssertTrue("\(error)".contains("reduce the policy"), "\(error)")
        }
    }

    /// Ports below the array's slots take no room; the rest count against bn_ports_high.
    func testOnlyHighPortsCount() throws {
        var state = MapState.empty
        let record = PortRecord(address: IPv4Address(10, 0, 0, 2), mac: MACAddress(2, 0, 0, 0, 0, 2))
        for ifindex in 1..<UInt32(BPFNET_MAX_CONTAINERS + 10) { state.ports[ifindex] = record }
        XCTAssertNoThrow(try MapCapacity.check(state))
        for offset in 0...UInt32(BPFNET_MAX_CONTAINERS) { state.ports[UInt32(BPFNET_PORT_SLOTS) + offset] = record }
        XCTAssertThrowsError(try MapCapacity.check(state)) { error in
            XCTAssertTrue("\(error)".contains("bn_ports_high needs"), "\(error)")
        }
    }
}

final class IPTablesVariantTests: XCTestCase {
    func testCommandNames() {
        let names = IPTablesVariant.allCases.map {
            [$0.saveCommand, $0.single, $0.restore6Command, $0.save6Command, $0.single6]
        }
        XCTAssertEqual(
            names,
            [
                ["iptables-save", "iptables", "ip6tables-restore", "ip6tables-save", "ip6tables"],
                ["iptables-nft-save", "iptables-nft", "ip6tables-nft-restore", "ip6tables-nft-save", "ip6tables-nft"],
                [
                    "iptables-legacy-save", "iptables-legacy", "ip6tables-legacy-restore", "ip6tables-legacy-save",
                    "ip6tables-legacy",
                ],
            ])
        if ProcessInfo.processInfo.environment["BPFNET_IPTABLES_RESTORE"] == nil {
            XCTAssertEqual(IPTablesVariant.legacy.restoreCommand, "iptables-legacy-restore")
        }
    }
}
