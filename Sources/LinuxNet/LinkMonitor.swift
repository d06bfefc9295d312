// SPDX-License-Identifier: Apache-2.0
//
// Link notifications (the RTMGRP_LINK multicast group of NETLINK_ROUTE): the
// kernel says when an interface appears, changes (joins a bridge, goes up) or
// goes. `bpfnet run` uses it to give a new bridge port the port program the
// moment it joins, not when Docker's start event comes. Like RouteNetlink, the
// socket belongs to the namespace of the thread that created it.

internal import CLinuxNet

#if canImport(Glibc)
import Glibc
#endif

/// Subscribes to the link notifications of the calling thread's namespace.
public final class LinkMonitor: @unchecked Sendable {
    public enum Event: Hashable, Sendable {
        /// RTM_NEWLINK: a new interface, or a change to one (its master, its state).
        case changed(RouteNetlink.Link)
        /// RTM_DELLINK.
        case removed(index: Int32)
        /// The socket's buffer overflowed (ENOBUFS): notifications were lost,
        /// so whoever follows must look at every interface again.
        case overflow
    }

    private let fd: Int32

    /// Opens the socket and joins RTMGRP_LINK.
    public init() throws(LinuxNetError) {
        fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
        guard fd >= 0 else {
            throw LinuxNetError(operation: "socket(AF_NETLINK, NETLINK_ROUTE)", action: "link monitor", errno: errno)
        }
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        address.nl_groups = UInt32(RTMGRP_LINK)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
            }
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw LinuxNetError(operation: "bind(RTMGRP_LINK)", action: "link monitor", errno: code)
        }
        // Room for a burst (a compose project starting); an overflow is reported, not fatal.
        // SO_RCVBUFFORCE (root) goes past net.core.rmem_max, which SO_RCVBUF is capped at.
        var size: Int32 = 1 << 20
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    deinit { close(fd) }

    /// Waits up to `timeout` for notifications and returns those of one read
    /// (empty when none came in time).
    public func next(timeout: Duration) throws(LinuxNetError) -> [Event] {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(
            clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let ready = poll(&poller, 1, milliseconds)
        if ready == 0 || (ready < 0 && errno == EINTR) { return [] }
        guard ready > 0 else { throw LinuxNetError(operation: "poll", action: "link monitor", errno: errno) }

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)
        defer { buffer.deallocate() }
        let received = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
        if received < 0 {
            if errno == ENOBUFS { return [.overflow] }
            if errno == EAGAIN || errno == EINTR { return [] }
            throw LinuxNetError(operation: "recv", action: "link monitor", errno: errno)
        }
        return Self.events(in: UnsafeRawBufferPointer(rebasing: buffer[0..<received]))
    }

    /// Reads and discards every notification already queued, without
    /// waiting; returns whether there was any (a lost one counts). For a
    /// cache of the interfaces: nothing queued means nothing changed since the
    /// last drain.
    public func drainPending() throws(LinuxNetError) -> Bool {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)
        defer { buffer.deallocate() }
        var any = false
        while true {
            let received = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if received >= 0 {
                any = true
                continue
            }
            switch errno {
            case EAGAIN: return any
            case EINTR: continue
            case ENOBUFS: any = true
            default: throw LinuxNetError(operation: "recv", action: "link monitor", errno: errno)
            }
        }
    }

    /// The link notifications in one datagram.
    static func events(in datagram: UnsafeRawBufferPointer) -> [Event] {
        let headerSize = MemoryLayout<nlmsghdr>.size
        var events: [Event] = []
        var offset = 0
        while offset + headerSize <= datagram.count {
            let header = datagram.loadUnaligned(fromByteOffset: offset, as: nlmsghdr.self)
            let length = Int(header.nlmsg_len)
            guard length >= headerSize, offset + length <= datagram.count else { break }
            defer { offset += RouteNetlink.align(length) }
            let payload = UnsafeRawBufferPointer(rebasing: datagram[(offset + headerSize)..<(offset + length)])
            let type = Int(header.nlmsg_type)
            // The bridge also reports its ports' own state (family AF_BRIDGE,
            // a DELLINK when a port leaves): not the interface coming or going.
            guard payload.count >= MemoryLayout<ifinfomsg>.size,
                payload.loadUnaligned(as: ifinfomsg.self).ifi_family != UInt8(AF_BRIDGE)
            else { continue }
            if type == RTM_NEWLINK, let link = RouteNetlink.parseLink(type, payload) {
                events.append(.changed(link))
            } else if type == RTM_DELLINK, payload.count >= MemoryLayout<ifinfomsg>.size {
                events.append(.removed(index: payload.loadUnaligned(as: ifinfomsg.self).ifi_index))
            }
        }
        return events
    }
}

/// What the link notifications mean for bridges: an interface appeared, or
/// got a master (joined a bridge). A port joins once, whatever else changes on
/// it later (up, MTU, …); leaving and joining again is a new join. Shared by
/// `bpfnet run`'s agent and `bpfnet load --watch`.
public struct LinkChangeTracker: Sendable {
    public enum Change: Hashable, Sendable {
        /// The first notification of an interface (new, or unseen since the tracker began).
        case appeared(name: String)
        /// `port` got the master with ifindex `masterIndex`.
        case joined(port: String, masterIndex: Int32)
        /// Notifications were lost: any interface may have changed.
        case lost
    }

    /// ifindex → its master when last told (0: none).
    private var masters: [Int32: Int32] = [:]

    public init() {}

    public mutating func changes(from events: [LinkMonitor.Event]) -> [Change] {
        var result: [Change] = []
        for event in events {
            switch event {
            case .changed(let link):
                let previous = masters.updateValue(link.master ?? 0, forKey: link.index)
                if previous == nil { result.append(.appeared(name: link.name)) }
                if let master = link.master, master != previous {
                    result.append(.joined(port: link.name, masterIndex: master))
                }
            case .removed(let index):
                masters[index] = nil
            case .overflow:
                masters = [:]
                result.append(.lost)
            }
        }
        return result
    }
}
