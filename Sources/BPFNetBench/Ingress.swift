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
    func ingressPolicy(
        ports n: Int, portHook: PortHook = .tc, fastPath: Bool = true, nat: NATMode = .netfilter
    ) -> Policy {
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
            fastPath: fastPath, nat: nat)
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
}

/// The frame of `--profile new` with its source rewritten per packet: an
/// IPv4/UDP frame without VLAN tags (Ethernet header 14 bytes, IPv4 header
/// 20). Both checksums stay complete, as a wire delivers them (the eBPF NAT
/// takes only such frames): they are the template's sums without the
/// source, plus the new source's words — a few additions per frame, so the
/// sender costs every variant the same little.
struct NewFlowTemplate {
    let frame: [UInt8]
    /// One's-complement sums of everything but the source address (and port,
    /// and the checksum fields): the IPv4 header's, and the UDP pseudo
    /// header's with the datagram's.
    private let ipBase: UInt32
    private let udpBase: UInt32

    init(_ frame: [UInt8]) {
        precondition(frame.count >= 42 && frame[12] == 0x08 && frame[13] == 0x00 && frame[23] == 17)
        self.frame = frame
        func word(_ offset: Int) -> UInt32 { UInt32(frame[offset]) << 8 | UInt32(frame[offset + 1]) }
        // IPv4 header words but the checksum (24) and the source address (26, 28).
        ipBase = stride(from: 14, to: 34, by: 2).filter { ![24, 26, 28].contains($0) }.reduce(0) { $0 + word($1) }
        let udpLength = Int(word(38))
        // Pseudo header: destination address, protocol, UDP length; the datagram but source port and checksum.
        var udp = word(30) + word(32) + 17 + UInt32(udpLength)
        for offset in stride(from: 36, to: 34 + udpLength - 1, by: 2) where offset != 40 { udp += word(offset) }
        if udpLength % 2 == 1 { udp += UInt32(frame[34 + udpLength - 1]) << 8 }
        udpBase = udp
    }

    /// Writes `source` and both checksums into `buffer` (a copy of `frame`).
    func rewrite(_ buffer: UnsafeMutableRawBufferPointer, source: (address: IPv4Address, port: UInt16)) {
        let address = source.address.value
        let words = (address >> 16) + (address & 0xFFFF)
        buffer.storeBytes(of: address.bigEndian, toByteOffset: 26, as: UInt32.self)
        buffer.storeBytes(of: source.port.bigEndian, toByteOffset: 34, as: UInt16.self)
        buffer.storeBytes(of: Self.fold(ipBase + words).bigEndian, toByteOffset: 24, as: UInt16.self)
        let udp = Self.fold(udpBase + words + UInt32(source.port))
        // RFC 768: a computed 0 is sent as 0xFFFF (0 means "no checksum").
        buffer.storeBytes(of: (udp == 0 ? 0xFFFF : udp).bigEndian, toByteOffset: 40, as: UInt16.self)
    }

    private static func fold(_ sum: UInt32) -> UInt16 {
        var sum = sum
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
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
        BenchVariant(
            name: "bpfnet-ebpf-nat",
            summary: "ingress: the same with --nat ebpf: the ext program translates published-port connections "
                + "(bn_nat) and redirects them to the container; netfilter's DNAT only for what it leaves to the stack",
            tools: ["nft"], usesBPFNetMaps: true
        ) { BPFNetFilter(.bpf(portHook: .tc, fastPath: true), direction: .ingress, nat: .ebpf) },
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
    private let template: NewFlowTemplate
    private var sources = NewFlowSources()

    init(template: [UInt8]) { self.template = NewFlowTemplate(template) }

    func send(count: Int, ifindex: UInt32) throws {
        try PacketSocketSender.send([template.frame], count: count, ifindex: ifindex) { frame in
            self.template.rewrite(frame, source: self.sources.take())
        }
    }
}

/// The calling thread's namespace's conntrack table, through ctnetlink.
enum ConntrackTable {
    private static let netlinkNetfilter: Int32 = 12  // NETLINK_NETFILTER
    // SOCK_RAW and SOCK_CLOEXEC by value: bpfnet_shared.h's kernel headers make the names ambiguous here.
    private static let socketRaw: Int32 = 3
    private static let socketCloseOnExec: Int32 = 0o2_000_000
    /// (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE: without a tuple, a flush.
    private static let deleteMessage: UInt16 = 1 << 8 | 2
    private static let request: UInt16 = 1  // NLM_F_REQUEST
    private static let acknowledge: UInt16 = 4  // NLM_F_ACK

    /// Removes every IPv4 entry, so that the next burst's flows are all new
    /// and the table never fills (a full table drops or evicts). Entries are
    /// freed at once (SLAB_TYPESAFE_BY_RCU), not in a later softirq that
    /// would be charged to the next burst.
    static func flush() throws {
        let fd = socket(AF_NETLINK, socketRaw | socketCloseOnExec, netlinkNetfilter)
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

    /// Most frames of one `new` burst: half a conntrack table (flushed
    /// before each burst) and a quarter of bn_nat (cleared likewise; two
    /// entries per connection), so that neither table fills — a full one
    /// evicts (the LRU bn_nat) or drops (conntrack).
    static func newFlowsPerBurst() -> Int {
        min(capacity() / 2, Int(BPFNET_MAX_NAT_ENTRIES) / 4)
    }

    /// nf_conntrack_max: one table's (each namespace's) limit.
    static func capacity() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/netfilter/nf_conntrack_max", encoding: .utf8),
            let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), value > 0
        else { return 65536 }
        return value
    }
}
