// SPDX-License-Identifier: Apache-2.0
//
// Finding a container's bridge port, the host-side end of its veth: the container's eth0 has
// an iflink (IFLA_LINK) that is the ifindex of its peer in the bridge's namespace, and that
// peer's name is the port. Both are asked of the kernel over rtnetlink. A netlink socket
// answers for the namespace it was created in, so each socket is created on a dedicated
// thread that has setns()'d into the right namespace; the thread is thrown away afterwards
// and no thread of Swift's cooperative pool ever changes namespace. No subprocess: a full
// resync of 1,000 containers costs 1,000 thread starts, not 1,000 `nsenter`s.

#if os(Linux)
import Foundation
import Glibc

/// A container's port on the bridge.
public struct BridgePort: Hashable, Sendable {
    /// The host-side veth's name, e.g. "veth3f2a1b0".
    public var name: String
    /// Its ifindex in the bridge's namespace.
    public var ifindex: Int32
    /// The device it is enslaved to (IFLA_MASTER), normally the bridge; nil when none.
    public var masterIfindex: Int32?
    /// The ifindex of the container's own end inside its namespace.
    public var containerIfindex: Int32

    public init(name: String, ifindex: Int32, masterIfindex: Int32?, containerIfindex: Int32) {
        self.name = name
        self.ifindex = ifindex
        self.masterIfindex = masterIfindex
        self.containerIfindex = containerIfindex
    }
}

public struct BridgePortLookupError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Looks up bridge ports from container pids. Needs CAP_SYS_ADMIN (setns) and runs as root
/// in the agent.
public struct LinuxBridgePortLookup: Sendable {
    /// The network namespace that holds the bridge, e.g. "/run/netns/NAME"; nil means the
    /// calling process's own (the agent runs in the host's namespace next to docker0).
    public var bridgeNamespace: String?
    /// The container's interface on the default bridge (Docker names it eth0).
    public var containerInterface: String

    public init(bridgeNamespace: String? = nil, containerInterface: String = "eth0") {
        self.bridgeNamespace = bridgeNamespace
        self.containerInterface = containerInterface
    }

    /// The closure form `DockerPolicyTranslator` takes.
    public var resolver: BridgePortResolver {
        let lookup = self
        return { pid in try await lookup.hostPort(forPID: pid) }
    }

    /// The host-side veth name of the container whose process is `pid`.
    public func hostPort(forPID pid: Int32) async throws -> String {
        try await bridgePort(forPID: pid).name
    }

    public func bridgePort(forPID pid: Int32) async throws -> BridgePort {
        let lookup = self
        return try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try lookup.lookUpOnThisThread(pid: pid) })
            }
            thread.name = "bpfnet-netns"
            thread.start()
        }
    }

    /// Runs on a thread of its own, which it leaves in the container's namespace.
    private func lookUpOnThisThread(pid: Int32) throws -> BridgePort {
        if let bridgeNamespace {
            try enterNetworkNamespace(bridgeNamespace, what: "the bridge's namespace")
        }
        let hostSocket = try RouteNetlinkSocket()
        try enterNetworkNamespace("/proc/\(pid)/ns/net", what: "the namespace of pid \(pid)")
        let containerSocket = try RouteNetlinkSocket()

        guard let inner = try containerSocket.link(named: containerInterface) else {
            throw BridgePortLookupError("no interface \(containerInterface) in the network namespace of pid \(pid)")
        }
        guard let peer = inner.link, peer != 0, peer != inner.index else {
            throw BridgePortLookupError("\(containerInterface) in the namespace of pid \(pid) has no peer (not a veth)")
        }
        let where_ = bridgeNamespace ?? "the host's namespace"
        guard let outer = try hostSocket.link(index: peer) else {
            throw BridgePortLookupError(
                "the peer of \(containerInterface) of pid \(pid) (ifindex \(peer)) is not in \(where_)")
        }
        // Another namespace may hold an interface with the same ifindex: check it points back.
        guard outer.link == inner.index else {
            throw BridgePortLookupError(
                "ifindex \(peer) in \(where_) is \(outer.name), which is not the peer of \(containerInterface) of pid \(pid)")
        }
        return BridgePort(name: outer.name, ifindex: outer.index, masterIfindex: outer.master,
                          containerIfindex: inner.index)
    }
}

// MARK: - setns

private typealias SetnsFunction = @convention(c) (Int32, Int32) -> Int32
private let CLONE_NEWNET_FLAG: Int32 = 0x4000_0000

/// Glibc's setns(2): Swift's Glibc module does not export it (it needs _GNU_SOURCE).
private func setnsFunction() -> SetnsFunction? {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { return nil }
    return unsafeBitCast(symbol, to: SetnsFunction.self)
}

private func enterNetworkNamespace(_ path: String, what: String) throws {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        let code = errno
        let hint = code == ENOENT ? " (the process is gone)" : ""
        throw BridgePortLookupError("opening \(path), \(what): \(errnoText(code))\(hint)")
    }
    defer { close(fd) }
    guard let setns = setnsFunction() else {
        throw BridgePortLookupError("setns(2) is not available in this C library")
    }
    guard setns(fd, CLONE_NEWNET_FLAG) == 0 else {
        let code = errno
        let hint = code == EPERM ? " — run as root (CAP_SYS_ADMIN)" : ""
        throw BridgePortLookupError("setns into \(path), \(what): \(errnoText(code))\(hint)")
    }
}

// MARK: - rtnetlink, the little of it needed here

/// A NETLINK_ROUTE socket bound to the namespace it was created in.
final class RouteNetlinkSocket {
    struct LinkInfo {
        var index: Int32
        var name: String
        /// IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace).
        var link: Int32?
        /// IFLA_MASTER.
        var master: Int32?
    }

    // <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>: stable kernel ABI.
    private static let netlinkRoute: Int32 = 0
    private static let nlmsgError: UInt16 = 2
    private static let nlmsgDone: UInt16 = 3
    private static let rtmNewLink: UInt16 = 16
    private static let rtmGetLink: UInt16 = 18
    private static let nlmFRequest: UInt16 = 1
    private static let iflaAddress: UInt16 = 1
    private static let iflaIfname: UInt16 = 3
    private static let iflaLink: UInt16 = 5
    private static let iflaMaster: UInt16 = 10
    private static let iflaExtMask: UInt16 = 29
    private static let rtextFilterSkipStats: UInt32 = 1 << 3
    private static let headerSize = 16  // struct nlmsghdr
    private static let ifinfoSize = 16  // struct ifinfomsg

    private let fd: Int32
    private var sequence: UInt32 = 1

    init() throws {
        fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Self.netlinkRoute)
        guard fd >= 0 else { throw BridgePortLookupError("netlink socket: \(errnoText(errno))") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func link(named name: String) throws -> LinkInfo? {
        try getLink(index: 0, name: name)
    }

    func link(index: Int32) throws -> LinkInfo? {
        try getLink(index: index, name: nil)
    }

    /// RTM_GETLINK for one device; nil when the kernel answers ENODEV.
    private func getLink(index: Int32, name: String?) throws -> LinkInfo? {
        sequence &+= 1
        var message: [UInt8] = []
        append(&message, UInt32(0))  // nlmsg_len, patched below
        append(&message, Self.rtmGetLink)
        append(&message, Self.nlmFRequest)
        append(&message, sequence)
        append(&message, UInt32(0))  // nlmsg_pid: the kernel fills it in
        message.append(UInt8(AF_UNSPEC))  // ifi_family
        message.append(0)  // pad
        append(&message, UInt16(0))  // ifi_type
        append(&message, index)  // ifi_index
        append(&message, UInt32(0))  // ifi_flags
        append(&message, UInt32(0))  // ifi_change
        if let name {
            appendAttribute(&message, type: Self.iflaIfname, payload: Array(name.utf8) + [0])
        }
        appendAttribute(&message, type: Self.iflaExtMask, payload: bytes(of: Self.rtextFilterSkipStats))
        let length = UInt32(message.count)
        withUnsafeBytes(of: length) { message.replaceSubrange(0..<4, with: $0) }

        let sent = message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == message.count else { throw BridgePortLookupError("netlink send: \(errnoText(errno))") }

        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard received > 0 else {
                throw BridgePortLookupError("netlink receive: \(received == 0 ? "closed" : errnoText(errno))")
            }
            var offset = 0
            while offset + Self.headerSize <= received {
                let messageLength = Int(load(UInt32.self, buffer, offset))
                let type = load(UInt16.self, buffer, offset + 4)
                let seq = load(UInt32.self, buffer, offset + 8)
                guard messageLength >= Self.headerSize, offset + messageLength <= received else { break }
                defer { offset += align4(messageLength) }
                guard seq == sequence else { continue }
                switch type {
                case Self.nlmsgError:
                    let code = -load(Int32.self, buffer, offset + Self.headerSize)
                    if code == 0 { continue }
                    if code == ENODEV { return nil }
                    throw BridgePortLookupError("netlink RTM_GETLINK: \(errnoText(code))")
                case Self.rtmNewLink:
                    return parseLink(buffer, offset: offset, length: messageLength)
                case Self.nlmsgDone:
                    return nil
                default:
                    continue
                }
            }
        }
    }

    private func parseLink(_ buffer: [UInt8], offset: Int, length: Int) -> LinkInfo {
        let index = load(Int32.self, buffer, offset + Self.headerSize + 4)
        var info = LinkInfo(index: index, name: "")
        var attribute = offset + Self.headerSize + Self.ifinfoSize
        let end = offset + length
        while attribute + 4 <= end {
            let attributeLength = Int(load(UInt16.self, buffer, attribute))
            let type = load(UInt16.self, buffer, attribute + 2) & 0x3FFF  // without NLA_F_NESTED/NET_BYTEORDER
            guard attributeLength >= 4, attribute + attributeLength <= end else { break }
            let payload = attribute + 4
            let payloadLength = attributeLength - 4
            switch type {
            case Self.iflaIfname:
                let bytes = buffer[payload..<(payload + payloadLength)].prefix { $0 != 0 }
                info.name = String(decoding: bytes, as: UTF8.self)
            case Self.iflaLink where payloadLength >= 4:
                info.link = load(Int32.self, buffer, payload)
            case Self.iflaMaster where payloadLength >= 4:
                info.master = load(Int32.self, buffer, payload)
            default:
                break
            }
            attribute += align4(attributeLength)
        }
        return info
    }

    private func appendAttribute(_ message: inout [UInt8], type: UInt16, payload: [UInt8]) {
        append(&message, UInt16(4 + payload.count))
        append(&message, type)
        message.append(contentsOf: payload)
        message.append(contentsOf: [UInt8](repeating: 0, count: align4(payload.count) - payload.count))
    }
}

private func align4(_ value: Int) -> Int { (value + 3) & ~3 }

private func bytes<T: FixedWidthInteger>(of value: T) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
}

private func append<T: FixedWidthInteger>(_ message: inout [UInt8], _ value: T) {
    message.append(contentsOf: bytes(of: value))
}

private func load<T: FixedWidthInteger>(_ type: T.Type, _ buffer: [UInt8], _ offset: Int) -> T {
    buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
}
#endif
