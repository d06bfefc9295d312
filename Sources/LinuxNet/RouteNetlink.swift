// SPDX-License-Identifier: Apache-2.0
//
// The little of rtnetlink bpfnet needs: links (one by index or name, or all of
// them), addresses, namespace ids and the tc filters on a clsact hook. A NETLINK_ROUTE socket answers for the network
// namespace it was created in, so create one inside `NetworkNamespace.run` to
// ask another namespace. Message layouts and constants come from the kernel's
// UAPI headers (CLinuxNet).

internal import CLinuxNet

#if canImport(Glibc)
import Glibc
#endif

/// A NETLINK_ROUTE socket of the namespace the calling thread was in when it
/// was created.
public final class RouteNetlink {
    /// One network device, as RTM_NEWLINK describes it.
    public struct Link: Hashable, Sendable {
        public var index: Int32
        /// IFLA_IFNAME.
        public var name: String
        /// IFLA_ADDRESS: the hardware address (6 bytes for Ethernet), empty when none.
        public var address: [UInt8]
        /// IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace).
        public var link: Int32?
        /// IFLA_MASTER: the device it is enslaved to (a bridge), by ifindex.
        public var master: Int32?
        /// IFLA_LINK_NETNSID: the namespace of `link`, as an id of this
        /// namespace; nil when the peer is in this namespace.
        public var linkNetnsid: Int32?

        public init(
            index: Int32, name: String = "", address: [UInt8] = [], link: Int32? = nil,
            master: Int32? = nil, linkNetnsid: Int32? = nil
        ) {
            self.index = index
            self.name = name
            self.address = address
            self.link = link
            self.master = master
            self.linkNetnsid = linkNetnsid
        }
    }

    /// One address of a device, as RTM_NEWADDR describes it.
    public struct Address: Hashable, Sendable {
        /// The device's ifindex.
        public var index: Int32
        /// AF_INET or AF_INET6.
        public var family: Int32
        public var prefixLength: UInt8
        /// IFA_ADDRESS (network byte order, 4 or 16 bytes); on a point-to-point
        /// link, the peer's address.
        public var address: [UInt8]
        /// IFA_LOCAL: the local address, when the kernel gives it (always for IPv4).
        public var local: [UInt8]?
        /// IFA_LABEL: the device's name, or the alias label ("eth0:1"); IPv4 only.
        public var label: String?

        public init(
            index: Int32, family: Int32, prefixLength: UInt8, address: [UInt8] = [],
            local: [UInt8]? = nil, label: String? = nil
        ) {
            self.index = index
            self.family = family
            self.prefixLength = prefixLength
            self.address = address
            self.local = local
            self.label = label
        }

        /// The interface's own address: IFA_LOCAL, else IFA_ADDRESS (as getifaddrs(3) has it).
        public var localAddress: [UInt8] { local ?? address }
    }

    /// One tc filter, as RTM_NEWTFILTER describes it.
    public struct TrafficFilter: Hashable, Sendable {
        /// The classifier: "bpf", "u32", "matchall", ...
        public var kind: String
        /// 0 for the entry that stands for a classifier instance as a whole.
        public var handle: UInt32
        /// The filter's priority (`tc filter ... pref`).
        public var priority: UInt16

        public init(kind: String, handle: UInt32, priority: UInt16) {
            self.kind = kind
            self.handle = handle
            self.priority = priority
        }
    }

    /// The two hooks of a clsact qdisc, as a filter's parent.
    /// One route of the main table (or a route lookup's answer), IPv4 or
    /// IPv6: addresses in network byte order.
    public struct Route: Hashable, Sendable {
        public var family: Int32
        public var destination: [UInt8]
        public var prefixLength: UInt8
        /// The next hop; nil for a route to a directly connected network.
        public var gateway: [UInt8]?
        /// The output device.
        public var outputIndex: Int32?
        /// rtm_protocol: who made the route (RTPROT_KERNEL, RTPROT_BOOT for
        /// `ip route add`, RTPROT_STATIC, or a routing daemon's number).
        public var origin: UInt8
        /// rtm_type: RTN_UNICAST, RTN_LOCAL, RTN_UNREACHABLE, ...
        public var type: UInt8
        public var table: UInt32

        /// By default a unicast route of the main table made as `ip route add`
        /// makes it (RTPROT_BOOT 3, RTN_UNICAST 1, RT_TABLE_MAIN 254).
        public init(
            family: Int32, destination: [UInt8], prefixLength: UInt8, gateway: [UInt8]? = nil,
            outputIndex: Int32? = nil, origin: UInt8 = 3, type: UInt8 = 1, table: UInt32 = 254
        ) {
            self.family = family
            self.destination = destination
            self.prefixLength = prefixLength
            self.gateway = gateway
            self.outputIndex = outputIndex
            self.origin = origin
            self.type = type
            self.table = table
        }
    }

    public enum ClsactHook: Sendable {
        case ingress
        case egress

        /// TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS / TC_H_MIN_EGRESS).
        var parent: UInt32 {
            (UInt32(TC_H_CLSACT) & UInt32(TC_H_MAJ_MASK))
                | (UInt32(self == .ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS) & UInt32(TC_H_MIN_MASK))
        }
    }

    private static let headerSize = MemoryLayout<nlmsghdr>.size
    private static let linkHeaderSize = MemoryLayout<ifinfomsg>.size
    /// struct rtgenmsg, padded to NLMSG_ALIGNTO.
    private static let genericHeaderSize = align(MemoryLayout<rtgenmsg>.size)

    private let fd: Int32
    private var sequence: UInt32 = 0

    /// Opens the socket (5 s receive timeout).
    public init() throws(LinuxNetError) {
        fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
        guard fd >= 0 else {
            let code = errno
            throw LinuxNetError(operation: "socket(AF_NETLINK, NETLINK_ROUTE)", action: "netlink socket", errno: code)
        }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// RTM_GETLINK for the device with index `index`; nil when there is none.
    public func link(index: Int32) throws(LinuxNetError) -> Link? {
        try request(RTM_GETLINK, Self.linkRequest(index: index), what: "RTM_GETLINK \(index)", Self.parseLink).first
    }

    /// RTM_GETLINK for the device named `name`; nil when there is none.
    public func link(named name: String) throws(LinuxNetError) -> Link? {
        var body = Self.linkRequest(index: 0)
        Self.appendAttribute(&body, IFLA_IFNAME, Array(name.utf8) + [0])
        return try request(RTM_GETLINK, body, what: "RTM_GETLINK \(name)", Self.parseLink).first
    }

    /// Every device of the namespace (an RTM_GETLINK dump), in the kernel's order.
    public func links() throws(LinuxNetError) -> [Link] {
        try request(RTM_GETLINK, Self.linkRequest(index: 0), dump: true, what: "RTM_GETLINK dump", Self.parseLink)
    }

    /// Every address of `family` (AF_INET, AF_INET6; AF_UNSPEC: both) on every
    /// device (an RTM_GETADDR dump), in the kernel's order: by device, and on a
    /// device the primary address first.
    public func addresses(family: Int32) throws(LinuxNetError) -> [Address] {
        var header = ifaddrmsg()
        header.ifa_family = UInt8(family)
        return try request(RTM_GETADDR, bytes(of: header), dump: true, what: "RTM_GETADDR dump", Self.parseAddress)
    }

    /// RTM_GETNSID: the id this namespace gives the namespace `namespaceFD`
    /// refers to (-1 when it has none); nil when the kernel answers without one.
    public func nsid(ofNamespaceFD namespaceFD: Int32) throws(LinuxNetError) -> Int32? {
        var body = [UInt8](repeating: 0, count: Self.genericHeaderSize)
        body[0] = UInt8(AF_UNSPEC)  // rtgen_family
        Self.appendAttribute(&body, NETNSA_FD, bytes(of: UInt32(bitPattern: namespaceFD)))
        return try request(RTM_GETNSID, body, what: "RTM_GETNSID") { type, payload -> Int32? in
            guard type == RTM_NEWNSID else { return nil }
            var nsid: Int32?
            Self.forEachAttribute(payload, from: Self.genericHeaderSize) { kind, value in
                if kind == NETNSA_NSID && value.count >= 4 { nsid = value.loadUnaligned(as: Int32.self) }
            }
            return nsid
        }.first
    }

    /// The tc filters on the clsact hook `hook` of device `index` (an
    /// RTM_GETTFILTER dump); empty when the device has no clsact qdisc.
    public func filters(index: Int32, hook: ClsactHook) throws(LinuxNetError) -> [TrafficFilter] {
        var header = tcmsg()
        header.tcm_family = UInt8(AF_UNSPEC)
        header.tcm_ifindex = index
        header.tcm_parent = hook.parent
        return try request(
            RTM_GETTFILTER, bytes(of: header), dump: true, what: "RTM_GETTFILTER \(index)", Self.parseFilter)
    }

    /// Every route of `family` in the main table (an RTM_GETROUTE dump,
    /// other tables left out).
    public func routes(family: Int32) throws(LinuxNetError) -> [Route] {
        var header = rtmsg()
        header.rtm_family = UInt8(family)
        return try request(RTM_GETROUTE, bytes(of: header), dump: true, what: "RTM_GETROUTE dump", Self.parseRoute)
            .filter { $0.table == RT_TABLE_MAIN.rawValue }
    }

    /// The route the kernel would take to `address` (`ip route get`): its
    /// output device, gateway and type. Throws when there is none
    /// (ENETUNREACH, EHOSTUNREACH).
    public func route(to address: [UInt8], family: Int32) throws(LinuxNetError) -> Route? {
        var header = rtmsg()
        header.rtm_family = UInt8(family)
        header.rtm_dst_len = UInt8(address.count * 8)
        var body = bytes(of: header)
        Self.appendAttribute(&body, Int(RTA_DST.rawValue), address)
        return try request(RTM_GETROUTE, body, what: "RTM_GETROUTE \(Self.text(address))", Self.parseRoute).first
    }

    /// Adds `route` to its table; fails with EEXIST when the table has a
    /// route to the same prefix already (nothing is replaced).
    public func addRoute(_ route: Route) throws(LinuxNetError) {
        _ = try request(
            RTM_NEWROUTE, Self.routeRequest(route), flags: NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            what: "RTM_NEWROUTE \(Self.text(route.destination))/\(route.prefixLength)"
        ) { _, _ -> Never? in nil }
    }

    /// Deletes `route` (matched by table, prefix, protocol and, when given,
    /// gateway and device). A route that is gone already is no error.
    public func deleteRoute(_ route: Route) throws(LinuxNetError) {
        do {
            _ = try request(
                RTM_DELROUTE, Self.routeRequest(route), flags: NLM_F_ACK,
                what: "RTM_DELROUTE \(Self.text(route.destination))/\(route.prefixLength)"
            ) { _, _ -> Never? in nil }
        } catch  where error.errno == ESRCH {
            return
        }
    }

    // MARK: messages

    /// struct ifinfomsg for `index` (0: any), statistics left out of the answer.
    private static func linkRequest(index: Int32) -> [UInt8] {
        var header = ifinfomsg()
        header.ifi_family = UInt8(AF_UNSPEC)
        header.ifi_index = index
        var body = bytes(of: header)
        appendAttribute(&body, IFLA_EXT_MASK, bytes(of: UInt32(RTEXT_FILTER_SKIP_STATS)))
        return body
    }

    private static func routeRequest(_ route: Route) -> [UInt8] {
        var header = rtmsg()
        header.rtm_family = UInt8(route.family)
        header.rtm_dst_len = route.prefixLength
        header.rtm_table = route.table < 256 ? UInt8(route.table) : UInt8(RT_TABLE_UNSPEC.rawValue)
        header.rtm_protocol = route.origin
        header.rtm_scope = UInt8((route.gateway == nil ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE).rawValue)
        header.rtm_type = route.type
        var body = bytes(of: header)
        appendAttribute(&body, Int(RTA_DST.rawValue), route.destination)
        if let gateway = route.gateway { appendAttribute(&body, Int(RTA_GATEWAY.rawValue), gateway) }
        if let index = route.outputIndex { appendAttribute(&body, Int(RTA_OIF.rawValue), bytes(of: index)) }
        appendAttribute(&body, Int(RTA_TABLE.rawValue), bytes(of: route.table))
        return body
    }

    /// An address for messages: dotted quad, or IPv6's hex groups.
    static func text(_ address: [UInt8]) -> String {
        if address.count == 4 { return address.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: address.count, by: 2).map {
            String(UInt16(address[$0]) << 8 | UInt16(address[min($0 + 1, address.count - 1)]), radix: 16)
        }.joined(separator: ":")
    }

    /// Sends one request and parses its answers where they lie in the receive
    /// buffer (`parse` gets nlmsg_type and what follows the header, and
    /// returns nil to skip one): the first answer, or for a dump all of them
    /// up to NLMSG_DONE. No answer (empty) when the kernel says ENODEV or
    /// ENOENT, there being no such object. (A dump of 2,000 links is ~4 MB of
    /// attributes, most of which nobody reads: nothing is copied but what the
    /// parser keeps.)
    private func request<Parsed>(
        _ type: Int, _ body: [UInt8], dump: Bool = false, flags extraFlags: Int32 = 0, what: String,
        _ parse: (Int, UnsafeRawBufferPointer) -> Parsed?
    ) throws(LinuxNetError) -> [Parsed] {
        sequence &+= 1
        var flags = Int32(NLM_F_REQUEST) | extraFlags
        if dump { flags |= Int32(NLM_F_DUMP) }
        let header = nlmsghdr(
            nlmsg_len: UInt32(Self.headerSize + body.count), nlmsg_type: UInt16(type),
            nlmsg_flags: UInt16(flags), nlmsg_seq: sequence, nlmsg_pid: 0)
        let message = bytes(of: header) + body
        let sent = message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == message.count else {
            let code = sent < 0 ? errno : EMSGSIZE
            throw LinuxNetError(operation: "send", action: "netlink \(what): send", errno: code)
        }
        var answers: [Parsed] = []
        // 32 KiB is the most the kernel puts into one read of a dump.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let received = recv(fd, buffer.baseAddress, buffer.count, 0)
            guard received > 0 else {
                let code = received == 0 ? ECONNRESET : errno
                throw LinuxNetError(operation: "recv", action: "netlink \(what): receive", errno: code)
            }
            var offset = 0
            while offset + Self.headerSize <= received {
                let header = buffer.loadUnaligned(fromByteOffset: offset, as: nlmsghdr.self)
                let length = Int(header.nlmsg_len)
                guard length >= Self.headerSize, offset + length <= received else { break }
                defer { offset += Self.align(length) }
                guard header.nlmsg_seq == sequence else { continue }
                let kind = Int32(header.nlmsg_type)
                if kind == NLMSG_ERROR || kind == NLMSG_DONE {
                    // Both carry an int error (0: none; NLMSG_DONE's may be absent).
                    let code =
                        length >= Self.headerSize + 4
                        ? -buffer.loadUnaligned(fromByteOffset: offset + Self.headerSize, as: Int32.self) : 0
                    if code == ENODEV || code == ENOENT { return [] }
                    if code != 0 { throw LinuxNetError(operation: what, action: "netlink \(what)", errno: code) }
                    if kind == NLMSG_DONE { return answers }
                    // An acknowledgement (NLM_F_ACK): the end of a request that answers nothing else.
                    if !dump { return answers }
                    continue
                }
                let payload = UnsafeRawBufferPointer(rebasing: buffer[(offset + Self.headerSize)..<(offset + length)])
                if let parsed = parse(Int(kind), payload) { answers.append(parsed) }
                if !dump { return answers }
            }
        }
    }

    static func parseLink(_ type: Int, _ payload: UnsafeRawBufferPointer) -> Link? {
        guard type == RTM_NEWLINK, payload.count >= linkHeaderSize else { return nil }
        let header = payload.loadUnaligned(as: ifinfomsg.self)
        var link = Link(index: header.ifi_index)
        forEachAttribute(payload, from: linkHeaderSize) { kind, value in
            switch kind {
            case IFLA_IFNAME: link.name = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self)
            case IFLA_ADDRESS: link.address = Array(value)
            case IFLA_LINK where value.count >= 4: link.link = value.loadUnaligned(as: Int32.self)
            case IFLA_MASTER where value.count >= 4: link.master = value.loadUnaligned(as: Int32.self)
            case IFLA_LINK_NETNSID where value.count >= 4: link.linkNetnsid = value.loadUnaligned(as: Int32.self)
            default: break
            }
        }
        return link
    }

    private static func parseAddress(_ type: Int, _ payload: UnsafeRawBufferPointer) -> Address? {
        let headerSize = MemoryLayout<ifaddrmsg>.size
        guard type == RTM_NEWADDR, payload.count >= headerSize else { return nil }
        let header = payload.loadUnaligned(as: ifaddrmsg.self)
        var address = Address(
            index: Int32(bitPattern: header.ifa_index), family: Int32(header.ifa_family),
            prefixLength: header.ifa_prefixlen)
        forEachAttribute(payload, from: align(headerSize)) { kind, value in
            switch kind {
            case IFA_ADDRESS: address.address = Array(value)
            case IFA_LOCAL: address.local = Array(value)
            case IFA_LABEL: address.label = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self)
            default: break
            }
        }
        return address
    }

    private static func parseRoute(_ type: Int, _ payload: UnsafeRawBufferPointer) -> Route? {
        let headerSize = MemoryLayout<rtmsg>.size
        guard type == RTM_NEWROUTE, payload.count >= headerSize else { return nil }
        let header = payload.loadUnaligned(as: rtmsg.self)
        var route = Route(
            family: Int32(header.rtm_family), destination: [], prefixLength: header.rtm_dst_len,
            origin: header.rtm_protocol, type: header.rtm_type, table: UInt32(header.rtm_table))
        forEachAttribute(payload, from: align(headerSize)) { kind, value in
            switch kind {
            case Int(RTA_DST.rawValue): route.destination = Array(value)
            case Int(RTA_GATEWAY.rawValue): route.gateway = Array(value)
            case Int(RTA_OIF.rawValue) where value.count >= 4: route.outputIndex = value.loadUnaligned(as: Int32.self)
            case Int(RTA_TABLE.rawValue) where value.count >= 4: route.table = value.loadUnaligned(as: UInt32.self)
            default: break
            }
        }
        // The default route has no RTA_DST.
        if route.destination.isEmpty {
            route.destination = [UInt8](repeating: 0, count: header.rtm_family == UInt8(AF_INET6) ? 16 : 4)
        }
        return route
    }

    private static func parseFilter(_ type: Int, _ payload: UnsafeRawBufferPointer) -> TrafficFilter? {
        let headerSize = MemoryLayout<tcmsg>.size
        guard type == RTM_NEWTFILTER, payload.count >= headerSize else { return nil }
        let header = payload.loadUnaligned(as: tcmsg.self)
        // tcm_info: the priority in the upper 16 bits, the protocol in the lower.
        var filter = TrafficFilter(kind: "", handle: header.tcm_handle, priority: UInt16(header.tcm_info >> 16))
        forEachAttribute(payload, from: align(headerSize)) { kind, value in
            if kind == TCA_KIND { filter.kind = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return filter
    }

    /// Calls `body` with each attribute from `start` on: its type (without
    /// NLA_F_NESTED / NLA_F_NET_BYTEORDER) and its payload, in place.
    private static func forEachAttribute(
        _ payload: UnsafeRawBufferPointer, from start: Int,
        _ body: (Int, UnsafeRawBufferPointer) -> Void
    ) {
        let typeMask = ~UInt16(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
        let attributeHeader = MemoryLayout<nlattr>.size
        var offset = start
        while offset + attributeHeader <= payload.count {
            let attribute = payload.loadUnaligned(fromByteOffset: offset, as: nlattr.self)
            let length = Int(attribute.nla_len)
            guard length >= attributeHeader, offset + length <= payload.count else { break }
            body(
                Int(attribute.nla_type & typeMask),
                UnsafeRawBufferPointer(rebasing: payload[(offset + attributeHeader)..<(offset + length)]))
            offset += align(length)
        }
    }

    private static func appendAttribute(_ message: inout [UInt8], _ kind: Int, _ payload: [UInt8]) {
        let length = MemoryLayout<nlattr>.size + payload.count
        message += bytes(of: nlattr(nla_len: UInt16(length), nla_type: UInt16(kind)))
        message += payload
        message += [UInt8](repeating: 0, count: align(length) - length)
    }

    /// NLMSG_ALIGN / NLA_ALIGN (both 4).
    static func align(_ length: Int) -> Int {
        (length + Int(NLMSG_ALIGNTO) - 1) & ~(Int(NLMSG_ALIGNTO) - 1)
    }
}

private func bytes<T: BitwiseCopyable>(of value: T) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
}
