// SPDX-License-Identifier: Apache-2.0
//
// Helpers for the BPF layer's tests: root checks, throwaway network
// namespaces with a veth pair, private bpffs mounts and crafted frames.
// Everything a test creates is removed in its teardown, also on failure;
// nothing touches the root network namespace or /sys/fs/bpf.

import BPF
import BPFObjects
import Foundation
import Synchronization
import SystemPackage
import XCTest

/// Skips the test unless it runs as root (CI runs as root, so there it runs).
func requireRoot(_ what: String) throws {
    if geteuid() != 0 {
        throw XCTSkip("requires root: \(what)")
    }
}

/// Runs a command (no shell) and returns its standard output; throws with
/// its standard error when it exits non-zero.
@discardableResult
func runCommand(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
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

/// This test binary (/proc/self/exe), to run one of its tests in a child.
func ownExecutable() throws -> String {
    try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
}

struct CommandFailed: Error, CustomStringConvertible {
    var command: String
    var status: Int32
    var stderr: String
    var description: String { "`\(command)` exited \(status): \(stderr)" }
}

private let namespaceCounter = Mutex(0)

/// A network namespace `bpftest-<pid>-<n>` with a veth pair veth0 <-> veth1,
/// both up. Deleted by `destroy()` (registered as a teardown block by
/// `make(in:)`), which also removes the veths and every tc/XDP attachment
/// in it.
final class TestNamespace: @unchecked Sendable {
    let name: String
    let namespace: NetworkNamespace

    private init(name: String) throws {
        self.name = name
        try runCommand(["ip", "netns", "add", name])
        do {
            // No IPv6: its neighbour discovery and MLD reports would land on
            // the veths and spoil the tests' exact packet counts.
            try runCommand([
                "ip", "netns", "exec", name, "sysctl", "-q", "-w",
                "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
            ])
            try runCommand(["ip", "-n", name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1"])
            try runCommand(["ip", "-n", name, "link", "set", "veth0", "up"])
            try runCommand(["ip", "-n", name, "link", "set", "veth1", "up"])
            try runCommand(["ip", "-n", name, "link", "set", "lo", "up"])
            namespace = try NetworkNamespace(named: name)
        } catch {
            _ = try? runCommand(["ip", "netns", "del", name])
            throw error
        }
    }

    /// Creates a namespace and registers its removal with `testCase`.
    static func make(in testCase: XCTestCase) throws -> TestNamespace {
        let n = namespaceCounter.withLock { value -> Int in
            value += 1
            return value
        }
        let created = try TestNamespace(name: "bpftest-\(getpid())-\(n)")
        testCase.addTeardownBlock { created.destroy() }
        return created
    }

    func destroy() {
        // Deleting the namespace deletes its veths, and with them their
        // qdiscs, filters and XDP programs.
        _ = try? runCommand(["ip", "netns", "del", name])
    }

    /// Runs `body` on a thread inside the namespace.
    func run<R>(_ body: () throws -> R) throws -> R {
        try namespace.run(body)
    }

    func index(_ interface: String) throws -> UInt32 {
        try run { try NetworkInterface.index(named: interface) }
    }
}

/// A private bpffs mounted on a fresh temporary directory; unmounted and
/// removed in the test's teardown (pins go with the mount).
final class PrivateBPFFS: @unchecked Sendable {
    let path: FilePath

    static func make(in testCase: XCTestCase) throws -> PrivateBPFFS {
        let mount = try PrivateBPFFS()
        testCase.addTeardownBlock { mount.destroy() }
        return mount
    }

    private init() throws {
        var template = Array("/tmp/bpftest-bpffs-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        path = FilePath(String(cString: created))
        do {
            let mounted = try BPFFileSystem.ensureMounted(at: path)
            precondition(mounted, "\(path) unexpectedly was a bpffs already")
        } catch {
            rmdir(path.string)
            throw error
        }
    }

    func destroy() {
        try? BPFFileSystem.unmount(path, lazily: true)
        rmdir(path.string)
    }
}

/// A 60-byte Ethernet + IPv4 + UDP frame (minimum Ethernet size without FCS).
func udpFrame(
    source: (UInt8, UInt8, UInt8, UInt8) = (10, 0, 0, 1),
    destination: (UInt8, UInt8, UInt8, UInt8) = (10, 0, 0, 2),
    sourceMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x01],
    destinationMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x02]
) -> [UInt8] {
    var frame = destinationMAC + sourceMAC + [0x08, 0x00]
    let totalLength = 60 - 14
    var ip: [UInt8] = [
        0x45, 0x00, UInt8(totalLength >> 8), UInt8(totalLength & 0xff),
        0x00, 0x01, 0x00, 0x00,  // id, no fragmentation
        64, 17, 0x00, 0x00,  // ttl, UDP, checksum (filled below)
        source.0, source.1, source.2, source.3,
        destination.0, destination.1, destination.2, destination.3,
    ]
    var sum: UInt32 = 0
    for index in stride(from: 0, to: ip.count, by: 2) {
        sum += UInt32(ip[index]) << 8 | UInt32(ip[index + 1])
    }
    while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
    let checksum = ~UInt16(sum)
    ip[10] = UInt8(checksum >> 8)
    ip[11] = UInt8(checksum & 0xff)
    frame += ip
    let udpLength = totalLength - 20
    frame += [0x30, 0x39, 0x00, 0x35, UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 0x00, 0x00]
    frame += [UInt8](repeating: 0, count: 60 - frame.count)
    return frame
}

/// An IPv4 address as the u32 a BPF program sees in the packet (network order in memory).
func ipv4Key(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> UInt32 {
    UInt32(bigEndian: UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d))
}

/// `struct st_lpm_key` of bpf/selftest.bpf.c: prefix length, then the IPv4 address.
struct SelftestLPMKey: Equatable {
    var prefixLength: UInt32
    var address: (UInt8, UInt8, UInt8, UInt8)

    static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.prefixLength == rhs.prefixLength && lhs.address == rhs.address
    }
}

/// Slots of st_counters and st_config in bpf/selftest.bpf.c.
enum SelftestCounter: UInt32 {
    case xdpPackets = 0, xdpBytes, tcPackets, tcBytes
}

/// XDP and tc verdicts (linux/bpf.h, linux/pkt_cls.h).
enum Verdict {
    static let xdpDrop: UInt32 = 1
    static let xdpPass: UInt32 = 2
    static let xdpTX: UInt32 = 3
    static let tcOK: UInt32 = 0
    static let tcShot: UInt32 = 2
}

/// Opens (and by default loads) the selftest object. Without a pin root its
/// pinned map is created private (never under /sys/fs/bpf).
func selftestObject(load: Bool = true, options: BPFObject.Options = BPFObject.Options()) throws -> BPFObject {
    var options = options
    if options.pinRoot == nil { options.pinMaps = false }
    let object = try BPFObject(bytes: BPFObjects.selftest.bytes, name: "selftest", options: options)
    if load { try object.load() }
    return object
}
