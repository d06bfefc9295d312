// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet bench --direction ingress` (docs/bench.md, "Ingress"): an outside
// host's frames to a published port, the other direction of the bench.
//
//   ext  eth0 198.51.100.2 ══ ext0 198.51.100.1 (host) ── docker0 ── receiver 10.88.0.3:5201
//
// The frames come from the external namespace into the host's ext0,
// addressed to the host's ext address and host port 5201, which the host
// publishes (`-p 5201:5201/udp`) to the receiver; NAT turns them towards the
// receiver, the sink on its eth0 counts them. N further published UDP ports
// (host port 20000+g to the same container port) are spread over the
// phantom containers; the receiver's comes last, after all N, where rule
// order matters (Docker's DOCKER chains, as the link bench's last link).
//
// Profiles: `new` sends every frame from a source (address in
// 198.51.100.3-254, port 1024-65535) not seen since the host's conntrack
// table was last flushed (before each burst), so every frame is a new flow:
// Docker's nat DOCKER chain (N DNAT rules) and filter DOCKER chain (N
// ACCEPTs) are walked for each. `established` sends K fixed flows from
// 198.51.100.2:40000+k that the receiver answered once first: conntrack
// short-cuts them (Docker's RELATED,ESTABLISHED accept, NAT from the entry).

import BPFNetCore
import BPFNetShared
import BPFNetTestSupport
import Foundation
import NetLab

extension BenchWorkload {
    /// The external host's namespace (NetLab role) and the frames' source there.
    static let externalName = "ext"
    static let externalInterface = "ext0"
    static let hostExternalAddress = IPv4InterfaceAddress("198.51.100.1/24")!
    static let externalIP = IPv4Address(198, 51, 100, 2)
    /// Fixed MACs on the ext link (NetLab leaves veths random): frames are built before they are sent.
    static let hostExternalMAC = MACAddress(0x02, 0, 0xc6, 0x33, 0x64, 0x01)
    static let externalMAC = MACAddress(0x02, 0, 0xc6, 0x33, 0x64, 0x02)
    static let bridgeMAC = MACAddress(dockerStyleFor: bridgeAddress.address)
    /// Decoy published port g is host port (and container port) 20000 + g.
    static let firstDecoyHostPort: UInt16 = 20000
    /// A container port nobody publishes: the denied-traffic check.
    static let unpublishedPort: UInt16 = 5202
    /// Most published ports N (the receiver's comes on top): bpfnet's
    /// published-port map; the decoys' host ports stay below 36,384.
    public static var maxPublishedPorts: Int { Int(BPFNET_MAX_PUBLISHED) - 1 }

    /// The receiver's published port, the destination of every measured frame.
    static let measuredPort = PublishedPort(hostPort: receiverPort, containerPort: receiverPort, proto: .udp)

    /// The N published ports that carry no traffic, as (phantom, port): port g
    /// goes to phantom g mod m, so consecutive ports belong to different containers.
    func decoyPublishedPorts(_ n: Int) -> [(phantom: Int, port: PublishedPort)] {
        precondition(n == 0 || phantomCount > 0, "published ports need phantoms")
        return (0..<n).map { g in
            let port = Self.firstDecoyHostPort + UInt16(g)
            return (g % phantomCount, PublishedPort(hostPort: port, containerPort: port, proto: .udp))
        }
    }

    /// The policy of a host with N published ports besides the receiver's
    /// (icc=false, no links). The receiver is the last container, so every
    /// renderer that follows the containers' order puts its port after all N.
    func ingressPolicy(ports n: Int, portHook: PortHook = .tc, fastPath: Bool = true) -> Policy {
        var published = [[PublishedPort]](repeating: [], count: phantomCount)
        for (phantom, port) in decoyPublishedPorts(n) { published[phantom].append(port) }
        var containers = [
            Container(name: Self.senderName, ip: Self.senderIP, mac: Self.senderMAC, port: Self.senderBridgePort)
        ]
        containers += phantoms.map {
            Container(
                name: $0.name, ip: $0.ip, mac: $0.mac, port: $0.port, exposed: published[$0.index].map(Self.exposed),
                published: published[$0.index])
        }
        containers.append(
            Container(
                name: Self.receiverName, ip: Self.receiverIP, mac: Self.receiverMAC, port: Self.receiverBridgePort,
                exposed: [PortSpec(Self.receiverPort, .udp)], published: [Self.measuredPort]))
        return Policy(
            bridge: Self.bridgeName, icc: false, ipForward: true, forwardPolicy: .drop, portHook: portHook,
            extInterfaces: [ExternalInterface(name: Self.externalInterface)], containers: containers,
            fastPath: fastPath)
    }

    private static func exposed(_ port: PublishedPort) -> PortSpec { PortSpec(port.containerPort, port.proto) }

    /// Every published port of the host with N, as NAT renderers take them.
    func ingressPublished(ports n: Int) -> [(container: IPv4Address, port: PublishedPort)] {
        decoyPublishedPorts(n).map { (Phantom(index: $0.phantom).ip, $0.port) }
            + [(Self.receiverIP, Self.measuredPort)]
    }

    /// dockerd 20.10's iptables for that host (Docker2010Rules, the renderer
    /// DockerOracleTests holds to a live dockerd): nat DOCKER with one DNAT
    /// per published port, filter DOCKER with one ACCEPT each, the
    /// receiver's last in both.
    func ingressDockerRules(ports n: Int) -> String {
        Docker2010Rules.render(ingressPolicy(ports: n), subnets: [Self.bridgeName: Self.bridgeAddress.network])
    }

    // MARK: Topology

    /// The host of an ingress variant: the same as the other direction's,
    /// with NAPI on ext0 (live frames enter there).
    func ingressTopologySpec(bridgeNetfilter: Bool) -> TopologySpec {
        var spec = topologySpec(bridgeNetfilter: bridgeNetfilter)
        spec.externals = spec.externals.map { external in
            var external = external
            external.hostSideGRO = true
            return external
        }
        return spec
    }

    /// `ip -batch` lines for the host namespace: ext0's fixed MAC and the
    /// external host as a static neighbour (the answers of `established` go there).
    static func ingressHostLines() -> [String] {
        [
            "link set \(externalInterface) address \(hostExternalMAC)",
            "neigh replace \(externalIP) lladdr \(externalMAC) dev \(externalInterface) nud permanent",
        ]
    }

    /// The same for the external namespace.
    static func ingressExternalLines() -> [String] {
        [
            "link set eth0 address \(externalMAC)",
            "neigh replace \(hostExternalAddress.address) lladdr \(hostExternalMAC) dev eth0 nud permanent",
        ]
    }

    // MARK: Frames

    /// Flow k of `established` (and the template of `new`):
    /// 198.51.100.2:40000+k → the host's ext address, port 5201.
    func ingressFrame(flow k: Int) -> [UInt8] {
        Self.ingressFrame(from: Self.externalIP, sourcePort: flowSourcePort(k), to: Self.hostExternalAddress.address)
    }

    /// The receiver's answer on flow k, as it leaves the container (before
    /// the reverse NAT): receiver:5201 → the flow's source, via the bridge's address.
    func ingressReplyFrame(flow k: Int) -> [UInt8] {
        PacketBuilder.udpFrame(
            from: Endpoint(mac: Self.receiverMAC, ip: Self.receiverIP),
            to: Endpoint(mac: Self.bridgeMAC, ip: Self.externalIP),
            sourcePort: Self.receiverPort, destinationPort: flowSourcePort(k),
            payload: Array(repeating: 0x72, count: Self.packetBytes - 14 - 20 - 8))
    }

    /// Straight at the receiver's address and a port nobody publishes
    /// (routed, no NAT): a filter drops it; the bare path delivers it.
    func ingressDeniedFrame() -> [UInt8] {
        Self.ingressFrame(
            from: Self.externalIP, sourcePort: Self.firstSourcePort, to: Self.receiverIP,
            destinationPort: Self.unpublishedPort)
    }

    static func ingressFrame(
        from source: IPv4Address, sourcePort: UInt16, to destination: IPv4Address,
        destinationPort: UInt16 = receiverPort
    ) -> [UInt8] {
        let frame = PacketBuilder.udpFrame(
            from: Endpoint(mac: externalMAC, ip: source), to: Endpoint(mac: hostExternalMAC, ip: destination),
            sourcePort: sourcePort, destinationPort: destinationPort,
            payload: Array(repeating: 0x62, count: packetBytes - 14 - 20 - 8))
        precondition(frame.count == packetBytes)
        return frame
    }
}

/// The sources of `--profile new`: the i-th frame of a burst comes from
/// 198.51.100.(3 + i / 64512), port 1024 + i mod 64512 — 16 million distinct
/// flows, far more than one burst sends (conntrack is flushed between bursts).
struct NewFlowSources {
    static let firstPort: UInt32 = 1024
    static let portsPerAddress: UInt32 = 65536 - firstPort
    static let firstAddress = IPv4Address(198, 51, 100, 3)
    static let addresses: UInt32 = 252
    static let count = portsPerAddress * addresses

    private(set) var next: UInt32 = 0

    /// The next source, cycling.
    mutating func take() -> (address: IPv4Address, port: UInt16) {
        let index = next
        next = next + 1 == Self.count ? 0 : next + 1
        return Self.source(index)
    }

    static func source(_ index: UInt32) -> (address: IPv4Address, port: UInt16) {
        (
            IPv4Address(firstAddress.value + index / portsPerAddress),
            UInt16(firstPort + index % portsPerAddress)
        )
    }

    /// Writes `source` into an IPv4/UDP frame without VLAN tags (Ethernet
    /// header 14 bytes, IPv4 header 20) and recomputes both checksums: the
    /// frame stays complete, as a wire delivers it (the eBPF NAT path takes
    /// only frames with full checksums).
    static func rewrite(_ frame: UnsafeMutableRawBufferPointer, source: (address: IPv4Address, port: UInt16)) {
        let address = source.address.value
        for (offset, shift) in [(26, 24), (27, 16), (28, 8), (29, 0)] as [(Int, UInt32)] {
            frame[offset] = UInt8(truncatingIfNeeded: address >> shift)
        }
        frame[34] = UInt8(source.port >> 8)
        frame[35] = UInt8(source.port & 0xFF)
        func sum(_ range: StrideTo<Int>, into total: inout UInt32) {
            for offset in range { total += UInt32(frame[offset]) << 8 | UInt32(frame[offset + 1]) }
        }
        func fold(_ total: UInt32) -> UInt16 {
            var total = total
            while total >> 16 != 0 { total = (total & 0xFFFF) + (total >> 16) }
            return ~UInt16(total)
        }
        // IPv4 header checksum (bytes 24-25).
        frame[24] = 0
        frame[25] = 0
        var ip: UInt32 = 0
        sum(stride(from: 14, to: 34, by: 2), into: &ip)
        let ipChecksum = fold(ip)
        frame[24] = UInt8(ipChecksum >> 8)
        frame[25] = UInt8(ipChecksum & 0xFF)
        // UDP checksum (bytes 40-41) over the pseudo header and the datagram.
        let udpLength = Int(frame[38]) << 8 | Int(frame[39])
        frame[40] = 0
        frame[41] = 0
        var udp = UInt32(17) + UInt32(udpLength)
        sum(stride(from: 26, to: 34, by: 2), into: &udp)  // source and destination addresses
        let end = 34 + udpLength
        sum(stride(from: 34, to: end - 1, by: 2), into: &udp)
        if udpLength % 2 == 1 { udp += UInt32(frame[end - 1]) << 8 }
        var udpChecksum = fold(udp)
        if udpChecksum == 0 { udpChecksum = 0xFFFF }  // RFC 768: 0 means "no checksum"
        frame[40] = UInt8(udpChecksum >> 8)
        frame[41] = UInt8(udpChecksum & 0xFF)
    }
}

extension BenchVariant {
    /// The variants of `--direction ingress`; their `bridge` is the reference
    /// there: the bridge with the NAT a published port needs, and no filter.
    public static let ingress: [BenchVariant] = [
        BenchVariant(
            name: "bridge",
            summary: "ingress reference: the bridge and netfilter DNAT of the published ports (bpfnet's nftables "
                + "NAT table alone), no filter, br_netfilter off"
        ) { IngressNATFloorFilter() },
        BenchVariant(
            name: "docker-iptables-nft",
            summary: "ingress: Docker 20.10's nat DOCKER chain (one DNAT per published port) and filter DOCKER "
                + "chain (one ACCEPT each) via iptables-nft, br_netfilter on",
            bridgeNetfilter: true, tools: ["iptables-nft-restore"]
        ) { DockerIptablesFilter(backend: .nft, direction: .ingress) },
        BenchVariant(
            name: "docker-iptables-legacy",
            summary: "ingress: the same Docker rules via iptables-legacy, br_netfilter on",
            bridgeNetfilter: true, tools: ["iptables-legacy-restore"]
        ) { DockerIptablesFilter(backend: .legacy, direction: .ingress) },
        BenchVariant(
            name: "bpfnet-netfilter-nat",
            summary: "ingress: bpfnet as `bpfnet load` sets it up (tc hook, fast path on): the ext program on ext0 "
                + "with the published ports in its maps, and its nftables NAT table",
            tools: ["nft"], usesBPFNetMaps: true
        ) { BPFNetFilter(.bpf(portHook: .tc, fastPath: true), direction: .ingress) },
        // What the XDP hook on ext0 costs before any program work: splits
        // bpfnet's cost over the reference into the hook's and its own.
        BenchVariant(
            name: "bridge-empty-xdp",
            summary: "ingress: the reference plus an empty XDP program on ext0 (hook cost only)", tools: ["nft"],
            isDiagnostic: true
        ) { IngressEmptyXDPFilter() },
    ]
}

/// `--profile new`: every frame from a fresh source, through an AF_PACKET
/// socket on the external host's eth0 (the live-frames generator repeats at
/// most BENCH_GEN_MAX_FLOWS templates, and this kernel refuses live frames).
/// Rewriting a frame costs ~50 ns of the sending thread, on every variant alike.
final class NewFlowSender {
    private let template: [UInt8]
    private var sources = NewFlowSources()

    init(template: [UInt8]) { self.template = template }

    func send(count: Int, ifindex: UInt32) throws {
        try PacketSocketSender.send([template], count: count, ifindex: ifindex) { frame in
            NewFlowSources.rewrite(frame, source: self.sources.take())
        }
    }
}

/// The calling thread's namespace's conntrack table, through ctnetlink.
enum ConntrackTable {
    private static let netlinkNetfilter: Int32 = 12  // NETLINK_NETFILTER
    /// (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE: without a tuple, a flush.
    private static let deleteMessage: UInt16 = 1 << 8 | 2
    private static let request: UInt16 = 1  // NLM_F_REQUEST
    private static let acknowledge: UInt16 = 4  // NLM_F_ACK

    /// Removes every IPv4 entry, so that the next burst's flows are all new
    /// and the table never fills (a full table drops or evicts). Entries are
    /// freed at once (SLAB_TYPESAFE_BY_RCU), not in a later softirq that
    /// would be charged to the next burst.
    static func flush() throws {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), netlinkNetfilter)
        guard fd >= 0 else {
            throw BenchError.runtime("socket(AF_NETLINK, NETLINK_NETFILTER): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        // struct nlmsghdr (16 bytes) + struct nfgenmsg (4 bytes).
        var message = [UInt8](repeating: 0, count: 20)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value) { message.replaceSubrange(offset..<offset + $0.count, with: $0) }
        }
        put(UInt32(20), at: 0)
        put(deleteMessage, at: 4)
        put(request | acknowledge, at: 6)
        put(UInt32(1), at: 8)  // sequence number
        message[16] = UInt8(AF_INET)  // nfgen_family; version NFNETLINK_V0 and res_id 0
        // struct sockaddr_nl (12 bytes): family, pad, pid 0 (the kernel), groups.
        var kernel = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: UInt16(AF_NETLINK)) { kernel.replaceSubrange(0..<2, with: $0) }
        let sent = message.withUnsafeBytes { bytes in
            kernel.withUnsafeBytes {
                sendto(
                    fd, bytes.baseAddress, bytes.count, 0, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self),
                    socklen_t(12))
            }
        }
        guard sent == message.count else {
            throw BenchError.runtime("flushing conntrack: sendto: \(String(cString: strerror(errno)))")
        }
        // The acknowledgement: NLMSG_ERROR with error 0, or the errno negated.
        var answer = [UInt8](repeating: 0, count: 256)
        let received = answer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard received >= 20 else {
            throw BenchError.runtime("flushing conntrack: no acknowledgement (\(String(cString: strerror(errno))))")
        }
        let error = answer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 16, as: Int32.self) }
        // ENOENT: nothing to flush is fine.
        guard error == 0 || -error == ENOENT else {
            throw BenchError.runtime("flushing conntrack: \(String(cString: strerror(-error)))")
        }
    }

    /// nf_conntrack_max: one table's (each namespace's) limit.
    static func capacity() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/netfilter/nf_conntrack_max", encoding: .utf8),
            let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), value > 0
        else { return 65536 }
        return value
    }
}
