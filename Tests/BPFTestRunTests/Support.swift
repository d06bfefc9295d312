// SPDX-License-Identifier: Apache-2.0
//
// The rig of the BPF test-run suites: the real port and ext objects loaded
// with their maps pinned on a private bpffs, a private network namespace
// whose interfaces give the ext program real ingress ifindexes, policy writes
// through the reconciler, and BPF_PROG_TEST_RUN with the counters read back.
//
// Hygiene (docs/testing.md): nothing here touches the root namespace's
// interfaces, routes, sysctls or firewall, or /sys/fs/bpf. Every test case
// gets its own bpffs mount and namespace (`bntr<pid>-<n>`), removed by
// teardown blocks registered as soon as each exists, so also on failure.

import BPF
import BPFNetCore
import BPFNetDataplane
import BPFNetShared
import CLibBPF
import Foundation
import Synchronization
import SystemPackage
import XCTest

// MARK: - Root

struct RootRequired: Error, CustomStringConvertible {
    var description: String
}

/// Skips the calling test unless it runs as root. CI sets
/// BPFNET_REQUIRE_ROOT_TESTS=1: there a missing root fails the test instead,
/// so that a misconfigured runner cannot turn the suite into silent skips.
func requireRoot(_ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
    guard geteuid() != 0 else { return }
    let message = "requires root: \(what)"
    if ProcessInfo.processInfo.environment["BPFNET_REQUIRE_ROOT_TESTS"] == "1" {
        XCTFail("\(message) (BPFNET_REQUIRE_ROOT_TESTS=1: these tests must run, not skip)", file: file, line: line)
        throw RootRequired(description: message)
    }
    throw XCTSkip(message)
}

// MARK: - Commands

struct CommandFailed: Error, CustomStringConvertible {
    var command: String
    var status: Int32
    var stderr: String
    var description: String { "`\(command)` exited \(status): \(stderr)" }
}

/// Runs a command (no shell), feeding `input` on its standard input; returns
/// its standard output, throws with its standard error when it exits non-zero.
@discardableResult
func runCommand(_ arguments: [String], input: String? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let output = Pipe()
    let error = Pipe()
    let inputPipe = Pipe()
    process.standardOutput = output
    process.standardError = error
    process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
    try process.run()
    if let input {
        inputPipe.fileHandleForWriting.write(Data(input.utf8))
        try inputPipe.fileHandleForWriting.close()
    }
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CommandFailed(
            command: arguments.joined(separator: " "), status: process.terminationStatus,
            stderr: String(decoding: err, as: UTF8.self))
    }
    return String(decoding: out, as: UTF8.self)
}

// MARK: - Leftovers of crashed runs

/// What a test process that died before its teardown (a crash, a kill -9)
/// left behind: namespaces `bntr<pid>-<n>` and bpffs mounts
/// `/tmp/bntr<pid>-bpffs-*` of a pid that no longer runs, made more than 15
/// minutes ago (a whole run takes under a minute; the age guards against a
/// pid from another pid namespace). Removed once per process, before the
/// first rig is made; concurrent runs of other engineers are never touched.
enum StaleResources {
    static let removed: Void = {
        let manager = FileManager.default
        func isStale(_ directory: String, _ name: String) -> Bool {
            guard name.hasPrefix("bntr"), let pid = Int32(name.dropFirst(4).prefix { $0.isNumber }),
                pid != getpid(), kill(pid, 0) != 0, errno == ESRCH,
                let modified = (try? manager.attributesOfItem(atPath: directory + "/" + name))?[.modificationDate]
                    as? Date
            else { return false }
            return modified.timeIntervalSinceNow < -15 * 60
        }
        for name in (try? manager.contentsOfDirectory(atPath: "/run/netns")) ?? [] where isStale("/run/netns", name) {
            _ = try? runCommand(["ip", "netns", "del", name])
        }
        for name in (try? manager.contentsOfDirectory(atPath: "/tmp")) ?? []
        where name.contains("-bpffs-") && isStale("/tmp", name) {
            let path = FilePath("/tmp").appending(name)
            if (try? BPFFileSystem.isBPFFS(path)) == true { try? BPFFileSystem.unmount(path, lazily: true) }
            rmdir(path.string)
        }
    }()
}

// MARK: - Private network namespace

private let namespaceCounter = Mutex(0)

/// A network namespace `bntr<pid>-<n>` with loopback up and one veth pair per
/// requested name (`NAME` ↔ `NAMEp`, both up). The ext program's test runs
/// happen on a thread inside it: `xdp_md.ingress_ifindex` must name a device
/// of the calling thread's namespace, and the conntrack kfunc looks up that
/// device's namespace, whose table starts empty.
final class PrivateNamespace: @unchecked Sendable {
    let name: String
    let namespace: NetworkNamespace
    /// ifindex of each interface created (and "lo").
    let indexes: [String: UInt32]

    /// Creates the namespace and registers its deletion with `testCase`
    /// before anything else can fail.
    static func make(in testCase: XCTestCase, veths: [String]) throws -> PrivateNamespace {
        let n = namespaceCounter.withLock { value -> Int in
            value += 1
            return value
        }
        let name = "bntr\(getpid())-\(n)"
        try runCommand(["ip", "netns", "add", name])
        // Deleting the namespace deletes its veths, addresses and nftables tables.
        testCase.addTeardownBlock { _ = try? runCommand(["ip", "netns", "del", name]) }
        return try PrivateNamespace(name: name, veths: veths)
    }

    private init(name: String, veths: [String]) throws {
        self.name = name
        // One `ip` for everything: each process costs tens of milliseconds here.
        var batch = "link set lo up\n"
        for veth in veths {
            batch += "link add \(veth) type veth peer name \(veth)p\nlink set \(veth) up\nlink set \(veth)p up\n"
        }
        try runCommand(["ip", "-n", name, "-batch", "-"], input: batch)
        let namespace = try NetworkNamespace(named: name)
        self.namespace = namespace
        indexes = try namespace.run {
            var result: [String: UInt32] = [:]
            for interface in ["lo"] + veths { result[interface] = try NetworkInterface.index(named: interface) }
            return result
        }
    }

    /// Runs `body` on a thread inside the namespace.
    func run<R>(_ body: () throws -> R) throws -> R {
        try namespace.run(body)
    }

    /// `ip -n NAME ARGS...`.
    func ip(_ arguments: String...) throws {
        try runCommand(["ip", "-n", name] + arguments)
    }

    func index(_ interface: String) -> UInt32 {
        guard let index = indexes[interface] else { preconditionFailure("no interface \(interface) in \(name)") }
        return index
    }
}

// MARK: - The dataplane under test

/// Kernel return codes (linux/bpf.h, linux/pkt_cls.h).
enum ReturnCode {
    static let tcOK = UInt32(TC_ACT_OK)
    static let tcShot = UInt32(TC_ACT_SHOT)
    static let xdpPass = UInt32(XDP_PASS.rawValue)
    static let xdpDrop = UInt32(XDP_DROP.rawValue)
}

/// Where a frame is run.
enum Hook: Hashable, CustomStringConvertible {
    /// `bpfnet_port_tc`, no context (the kernel builds a default `__sk_buff`).
    case portTC
    /// `bpfnet_port_tc` with an all-zero `__sk_buff` context passed in.
    case portTCContext
    /// `bpfnet_port_xdp`, no context.
    case portXDP
    /// `bpfnet_ext_xdp` with `xdp_md.ingress_ifindex` set.
    case ext(ingress: UInt32)

    static let portHooks: [Hook] = [.portTC, .portTCContext, .portXDP]

    var program: ProgramKind {
        switch self {
        case .portTC, .portTCContext: .portTC
        case .portXDP: .portXDP
        case .ext: .extXDP
        }
    }

    var isTC: Bool { program == .portTC }

    /// The port program's hooks, which check the sender (bn_ports).
    var isPort: Bool { program != .extXDP }

    /// Whether BPF_PROG_TEST_RUN may refuse `frame` at this hook before the
    /// program runs. Recent kernels (this machine's 6.18 among them) check
    /// an skb test run's network header: an untagged frame with ethertype
    /// IPv4 and fewer than 20 bytes after the Ethernet header, or IPv6 and
    /// fewer than 40, fails with EINVAL. XDP test runs take such frames, and
    /// both hooks share the parser (ctx.h), so XDP shows the program's
    /// verdict for them; real tc ingress does hand such frames to the program.
    func testRunMayRefuse(_ frame: [UInt8]) -> Bool {
        guard isTC, frame.count >= 14 else { return false }
        switch UInt16(frame[12]) << 8 | UInt16(frame[13]) {
        case EtherType.ipv4: return frame.count < 14 + 20
        case EtherType.ipv6: return frame.count < 14 + 40
        default: return false
        }
    }

    /// The return code for `action` at this hook.
    func returnCode(_ action: Verdict.Action) -> UInt32 {
        switch (isTC, action) {
        case (true, .pass): ReturnCode.tcOK
        case (true, .drop): ReturnCode.tcShot
        case (false, .pass): ReturnCode.xdpPass
        case (false, .drop): ReturnCode.xdpDrop
        }
    }

    /// The action a return code stands for; nil for codes the programs never return.
    /// A redirect is a pass delivered by the fast path around the bridge
    /// (docs/verdicts.md "Fast path": delivery, not verdicts).
    func action(of code: UInt32) -> Verdict.Action? {
        switch code {
        case returnCode(.pass): .pass
        case returnCode(.drop): .drop
        case isTC ? UInt32(TC_ACT_REDIRECT) : UInt32(XDP_REDIRECT.rawValue): .pass
        default: nil
        }
    }

    var description: String {
        switch self {
        case .portTC: "port-tc"
        case .portTCContext: "port-tc(__sk_buff ctx)"
        case .portXDP: "port-xdp"
        case .ext(let ingress): "ext-xdp(ingress \(ingress))"
        }
    }
}

/// The real objects loaded with their maps pinned on a private bpffs, the
/// policy written through the reconciler, and a private namespace.
final class TestRunRig: @unchecked Sendable {
    let namespace: PrivateNamespace
    let pinPath: FilePath
    private var dataplane: LoadedDataplane?
    /// The three programs, looked up once (each keeps its object alive).
    private var programs: (portTC: BPFProgram, portXDP: BPFProgram, extXDP: BPFProgram)?
    /// The policy maps as read back after the last write.
    private(set) var state: MapState = .empty
    /// The routes `routePeer` put into the namespace: what the ext program's
    /// FIB lookup towards each peer address finds, for the reference model.
    private(set) var peerRoutes: [IPv4Address: PeerRoute] = [:]

    /// Loads both objects on a fresh private bpffs (`LoadedDataplane.load`
    /// mounts one on the temporary directory) and creates the namespace;
    /// teardown blocks unmount, remove and delete them again.
    static func make(in testCase: XCTestCase, veths: [String] = ["ext0", "ext1", "ext2"]) throws -> TestRunRig {
        StaleResources.removed
        var template = Array("/tmp/bntr\(getpid())-bpffs-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        let pinPath = FilePath(String(cString: created))
        testCase.addTeardownBlock {
            // Pins go with the mount; the objects with the last fd (the rig's close()).
            if (try? BPFFileSystem.isBPFFS(pinPath)) == true {
                try? BPFFileSystem.unmount(pinPath, lazily: true)
            }
            rmdir(pinPath.string)
        }
        let namespace = try PrivateNamespace.make(in: testCase, veths: veths)
        let rig = try TestRunRig(pinPath: pinPath, namespace: namespace)
        testCase.addTeardownBlock { rig.close() }
        return rig
    }

    private init(pinPath: FilePath, namespace: PrivateNamespace) throws {
        self.pinPath = pinPath
        self.namespace = namespace
        let dataplane = try LoadedDataplane.load(pinPath: pinPath)
        XCTAssertTrue(try BPFFileSystem.isBPFFS(pinPath), "\(pinPath) should be a private bpffs mount")
        self.dataplane = dataplane
        programs = (try dataplane.portTC, try dataplane.portXDP, try dataplane.extXDP)
        state = try MapState(reading: dataplane.maps)
    }

    /// Drops every reference to the kernel objects, so the maps (tens of MB
    /// preallocated) go when the test ends, not when the process does.
    func close() {
        programs = nil
        dataplane = nil
    }

    private var loaded: LoadedDataplane {
        guard let dataplane else { preconditionFailure("the rig was closed") }
        return dataplane
    }

    var counterMap: BPFPerCPUMap<UInt32, bpfnet_counter> { loaded.counters }

    // MARK: Policy

    /// Writes `desired` the way the control plane does: read the maps back,
    /// diff with the reconciler, apply. Returns (and keeps) the state read
    /// back afterwards, which must hold exactly the desired policy.
    @discardableResult
    func write(_ desired: MapState, file: StaticString = #filePath, line: UInt = #line) throws -> MapState {
        let current = try MapState(reading: loaded.maps)
        var writer = loaded.maps
        try writer.apply(current.changes(to: desired))
        let readBack = try MapState(reading: loaded.maps)
        var expected = desired
        expected.config.generation = readBack.config.generation
        XCTAssertEqual(readBack, expected, "the maps do not hold the policy just written", file: file, line: line)
        state = readBack
        return readBack
    }

    // MARK: Counters

    /// Packets and bytes per counter slot (`ProgramKind.counterIndex`), summed over CPUs.
    func counters() throws -> [bpfnet_counter] {
        var slots = [bpfnet_counter](repeating: bpfnet_counter(), count: ProgramKind.counterSlots)
        for (index, perCPU) in try counterMap.entries() where Int(index) < slots.count {
            for value in perCPU {
                slots[Int(index)].packets &+= value.packets
                slots[Int(index)].bytes &+= value.bytes
            }
        }
        return slots
    }

    // MARK: Test runs

    func program(for hook: Hook) -> BPFProgram {
        guard let programs else { preconditionFailure("the rig was closed") }
        return switch hook {
        case .portTC, .portTCContext: programs.portTC
        case .portXDP: programs.portXDP
        case .ext: programs.extXDP
        }
    }

    /// Runs `frame` through `hook` (`BPF_PROG_TEST_RUN`, allocation-free) and
    /// returns the program's return value. Must be called on a thread inside
    /// `namespace` for `.ext` (see `inNamespace`).
    func runOnCurrentThread(_ hook: Hook, _ frame: UnsafeRawBufferPointer) throws -> UInt32 {
        let program = program(for: hook)
        switch hook {
        case .portTC, .portXDP:
            return try program.testRun(data: frame).returnValue
        case .portTCContext:
            let skb = __sk_buff()
            return try withUnsafeBytes(of: skb) { try program.testRun(data: frame, context: $0).returnValue }
        case .ext(let ingress):
            var md = xdp_md()
            md.data = 0
            md.data_end = UInt32(frame.count)
            md.ingress_ifindex = ingress
            return try withUnsafeBytes(of: md) { try program.testRun(data: frame, context: $0).returnValue }
        }
    }

    /// Runs `frame` through `hook` on a thread inside the private namespace.
    /// A port hook sees it from `sender` (default: the container the frame
    /// claims to come from, `PortSender.claimed(by:)`).
    func run(_ hook: Hook, _ frame: [UInt8], sender: PortSender? = nil) throws -> UInt32 {
        if hook.isPort { try setSender(sender ?? .claimed(by: frame)) }
        return try namespace.run { try frame.withUnsafeBytes { try runOnCurrentThread(hook, $0) } }
    }

    /// The port a port program's test run sees a frame enter on: the kernel
    /// builds the context on the namespace's loopback device.
    var testRunPort: UInt32 { namespace.index("lo") }

    /// Makes `sender` the container behind `testRunPort` (its `bn_ports`
    /// entry; `.unknown` removes it). The next `write` removes it again.
    func setSender(_ sender: PortSender) throws {
        var writer = loaded.maps
        switch sender {
        case .unknown:
            try? writer.delete(.port(testRunPort))
        case .container(let record):
            try writer.upsert(.port(ifindex: testRunPort, record))
        }
    }

    /// The port entries as the control plane reads them back (both kernel
    /// maps, `bn_ports` and `bn_ports_high`).
    func portEntries() throws -> [UInt32: PortRecord] {
        try MapState(reading: loaded.maps).ports
    }

    /// Writes or removes (nil) the port entry of `ifindex` through the control plane's writer.
    func setPort(_ ifindex: UInt32, _ record: PortRecord?) throws {
        var writer = loaded.maps
        if let record {
            try writer.upsert(.port(ifindex: ifindex, record))
        } else {
            try writer.delete(.port(ifindex))
        }
    }

    /// Runs `frame` through the port program's XDP hook as if it entered on
    /// `ingress` (an interface of the private namespace), and returns its reason.
    func portXDPReason(_ frame: [UInt8], ingress: UInt32) throws -> Reason? {
        let before = try counters()
        _ = try namespace.run {
            var md = xdp_md()
            md.data_end = UInt32(frame.count)
            md.ingress_ifindex = ingress
            return try frame.withUnsafeBytes { data in
                try withUnsafeBytes(of: md) { try programs!.portXDP.testRun(data: data, context: $0).returnValue }
            }
        }
        let after = try counters()
        let base = Int(ProgramKind.portXDP.rawValue) * Reason.slotsPerProgram
        let counted = (0..<Reason.slotsPerProgram).filter { after[base + $0].packets != before[base + $0].packets }
        return counted.count == 1 ? Reason(rawValue: UInt32(counted[0])) : nil
    }

    /// Makes the namespace route to peer host `peer` through `interface`
    /// (which gets `localAddress`, a prefix holding `peer`), with a permanent
    /// neighbour entry `mac` and forwarding on: what `ext_peer`'s
    /// `bpf_fib_lookup` then finds, and `peerRoutes` tells the model.
    func routePeer(_ peer: IPv4Address, via interface: String, mac: MACAddress, localAddress: String) throws {
        try namespace.ip("addr", "add", localAddress, "dev", interface)
        try namespace.ip(
            "neigh", "replace", peer.description, "lladdr", mac.description, "dev", interface, "nud", "permanent")
        try runCommand(["ip", "netns", "exec", namespace.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        peerRoutes[peer] = PeerRoute(ifindex: namespace.index(interface), neighbour: mac)
    }

    /// Runs `body` on one thread inside the private namespace (for loops of test runs).
    func inNamespace<R>(_ body: () throws -> R) throws -> R {
        try namespace.run(body)
    }

    // MARK: The reference model

    var reference: ReferenceDataplane { ReferenceDataplane(state: state) }

    /// What the model says `hook` does with `frame`.
    func modelVerdict(
        _ hook: Hook, _ frame: [UInt8], sender: PortSender? = nil,
        conntrack: (FlowTuple) -> Bool = { _ in false }
    ) -> Verdict {
        switch hook {
        case .portTC, .portTCContext, .portXDP:
            reference.portVerdict(frame: frame, sender: sender ?? .claimed(by: frame))
        case .ext(let ingress):
            reference.extVerdict(
                frame: frame, ingressIfindex: ingress, isConntrackReply: conntrack,
                routeToPeer: { [peerRoutes] in peerRoutes[$0] })
        }
    }
}

// MARK: - Diagnostics

/// A classic hex dump: offset, 16 bytes in hex, ASCII.
func hexDump(_ bytes: [UInt8]) -> String {
    guard !bytes.isEmpty else { return "    (0 bytes)" }
    var lines: [String] = []
    for start in stride(from: 0, to: bytes.count, by: 16) {
        let row = bytes[start..<min(start + 16, bytes.count)]
        let offset = String(start, radix: 16)
        var line = "    " + String(repeating: "0", count: max(0, 4 - offset.count)) + offset + "  "
        line += row.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
        line += String(repeating: " ", count: (16 - row.count) * 3)
        line += "  " + String(row.map { (0x20..<0x7F).contains($0) ? Character(UnicodeScalar($0)) : "." })
        lines.append(line)
    }
    return lines.joined(separator: "\n")
}
