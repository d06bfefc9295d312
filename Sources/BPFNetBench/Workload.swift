// SPDX-License-Identifier: Apache-2.0
//
// What every variant's host looks like and what it carries: the same
// addresses, the same containers and the same N links in every topology, so
// that the only difference between two sides is the filter.
//
//   sender   eth0 10.88.0.2 ══ vethsender ─┐
//   receiver eth0 10.88.0.3 ══ vethreceiver ┼─ docker0 10.88.0.1/16 ── ext0 ══ ext (198.51.100.2)
//   m "phantom" containers p0..p(m-1)       ┘
//       10.88.1.1.. on veths bp<i> (peer bq<i> stays in the host namespace)
//
// N links (docker run --link) among the phantoms, each child exposing one
// UDP port, give Docker N rule pairs in its DOCKER chain and bpfnet 4N link
// entries (forward, reverse and two fragment pairs); none of them matches the
// measured traffic. The measured traffic is K flows to receiver:5201/udp,
// all from the sender's own address (flow k from source port 40000+k): the
// port program drops a frame whose source is not its port's container
// (`spoofed`), so a flow cannot borrow a phantom's address. With K = 1 the
// allowed link comes after all N others, like the probe's "N rules before
// the one that matches". With K > 1 the links of phantoms 0..K-2 to the
// receiver are still spread evenly through the chain in Docker's start
// order (the chain has the same shape), but every flow matches the sender's
// link: bpfnet touches one key, iptables walks to that link's rules.
//
// Phantoms exist because a policy's containers need real bridge ports (bpfnet
// resolves and checks every port, as it does on a real host); a veth pair
// per phantom is the cheapest port that carries both tc and native XDP. Every
// variant gets the same phantoms, filtering or not.

import BPFNetCore
import BPFNetTestSupport
import NetLab

/// One `docker run --link child` on `parent` in the order Docker installed it.
struct BenchLink: Hashable, Sendable {
    /// Container names (as in the policy).
    var parent: String
    var child: String
    var parentIP: IPv4Address
    var childIP: IPv4Address
    /// The child's one exposed UDP port.
    var port: UInt16
    /// nil for the links that carry no traffic; the flow's index otherwise.
    var flow: Int?
}

/// The synthetic Docker host of one bench run.
public struct BenchWorkload: Sendable, Hashable {
    /// The largest N of the sweep: it sizes the topology (phantom count).
    public let maxLinks: Int
    /// K: allowed flows the traffic is spread over.
    public let flows: Int
    /// Docker bridge networks on the host, the default bridge included: the
    /// others are empty user-defined networks (a bridge with its subnet and
    /// no container), which Docker's rules pay for on every forwarded packet
    /// and bpfnet's programs must not.
    public let networks: Int

    public static let bridgeName = "docker0"
    public static let bridgeAddress = IPv4InterfaceAddress("10.88.0.1/16")!
    public static let senderName = "sender"
    public static let receiverName = "receiver"
    public static let senderIP = IPv4Address(10, 88, 0, 2)
    public static let receiverIP = IPv4Address(10, 88, 0, 3)
    /// The receiver's exposed UDP port, the destination of every measured frame.
    public static let receiverPort: UInt16 = 5201
    /// Flow k leaves from this source port + k.
    public static let firstSourcePort: UInt16 = 40000
    /// Phantom i is 10.88.1.1 + i and exposes this port + i (UDP).
    static let firstPhantomIP = IPv4Address(10, 88, 1, 1)
    static let firstPhantomPort: UInt16 = 10000
    /// A source no container has and no link names: the denied-traffic check.
    public static let strangerIP = IPv4Address(10, 88, 255, 254)
    /// Ethernet frame size of every measured packet (the 60-byte minimum, without FCS).
    public static let packetBytes = 60
    /// bpfnet writes 4 link rules per link with one exposed port.
    public static let linkRulesPerLink = 4
    /// One veth pair per phantom must be built in every topology; this keeps a
    /// run's build time in minutes.
    public static let maxFlows = 4096

    public init(maxLinks: Int, flows: Int, networks: Int = 1) {
        precondition(maxLinks >= 0 && flows >= 1 && networks >= 1, "N >= 0, K >= 1 and at least the default bridge")
        self.maxLinks = maxLinks
        self.flows = flows
        self.networks = networks
    }

    /// Most networks a run may have: each is a bridge in every topology.
    public static let maxNetworks = 1000

    // MARK: Networks

    /// One empty user-defined network: `docker network create` with an
    /// address of 10.100.0.0/14 (docker0 has 10.88.0.0/16).
    struct UserNetwork: Hashable, Sendable {
        var index: Int
        var name: String { "net\(index)" }
        var bridge: String { "br-net\(index)" }
        var address: IPv4InterfaceAddress {
            IPv4InterfaceAddress(
                address: IPv4Address(10, UInt8(100 + index / 256), UInt8(index % 256), 1), prefixLength: 24)!
        }
    }

    /// The networks besides the default bridge, oldest first.
    var userNetworks: [UserNetwork] { (1..<networks).map(UserNetwork.init) }

    /// `ip -batch` lines for the host namespace: the user networks' bridges.
    func networkLines() -> [String] {
        userNetworks.flatMap { network in
            [
                "link add \(network.bridge) type bridge", "addr add \(network.address) dev \(network.bridge)",
                "link set \(network.bridge) up",
            ]
        }
    }

    /// m: enough phantoms for `maxLinks` distinct ordered pairs and K-1 flow parents.
    public var phantomCount: Int {
        max(Self.phantomsNeeded(forLinks: maxLinks), flows - 1)
    }

    /// The smallest m with m(m-1) >= n (0 for n = 0).
    static func phantomsNeeded(forLinks n: Int) -> Int {
        guard n > 0 else { return 0 }
        var m = Int(Double(n).squareRoot())
        while m * (m - 1) < n { m += 1 }
        return max(m, 2)
    }

    // MARK: Containers

    struct Phantom: Hashable, Sendable {
        var index: Int
        var name: String { "p\(index)" }
        var ip: IPv4Address { IPv4Address(BenchWorkload.firstPhantomIP.value + UInt32(index)) }
        var mac: MACAddress { MACAddress(dockerStyleFor: ip) }
        var port: String { "bp\(index)" }
        var peer: String { "bq\(index)" }
        var exposedPort: UInt16 { BenchWorkload.firstPhantomPort &+ UInt16(truncatingIfNeeded: index) }
    }

    var phantoms: [Phantom] { (0..<phantomCount).map(Phantom.init) }

    static let senderMAC = MACAddress(dockerStyleFor: senderIP)
    static let receiverMAC = MACAddress(dockerStyleFor: receiverIP)
    static let senderBridgePort = "veth" + senderName
    static let receiverBridgePort = "veth" + receiverName

    /// The NetLab description of a host for one variant.
    func topologySpec(bridgeNetfilter: Bool) -> TopologySpec {
        TopologySpec(
            bridge: BridgeSpec(name: Self.bridgeName, address: Self.bridgeAddress),
            containers: [
                // GRO gives the sender's bridge port NAPI, without which every
                // XDP_TX live frame is dropped silently (err -95).
                ContainerSpec(name: Self.senderName, address: Self.senderIP, hostSideGRO: true),
                ContainerSpec(name: Self.receiverName, address: Self.receiverIP),
            ],
            externals: [
                ExternalSpec(
                    name: "ext", hostInterface: "ext0", hostAddress: IPv4InterfaceAddress("198.51.100.1/24")!,
                    addresses: [IPv4InterfaceAddress("198.51.100.2/24")!])
            ],
            ipForward: true, disableIPv6: true, bridgeNetfilter: bridgeNetfilter, staticNeighbours: true)
    }

    /// `ip -batch` lines (host namespace) that create the phantoms' bridge ports.
    func phantomPortLines() -> [String] {
        phantoms.flatMap { phantom in
            [
                "link add \(phantom.port) type veth peer name \(phantom.peer)",
                "link set \(phantom.port) master \(Self.bridgeName)",
                "link set \(phantom.port) up",
            ]
        }
    }

    // MARK: Flows

    /// The container whose link to the receiver stands for flow k in the chain:
    /// the sender for k = 0, phantom k-1 otherwise (the frames all come from the sender).
    func flowSource(_ k: Int) -> (name: String, ip: IPv4Address) {
        k == 0 ? (Self.senderName, Self.senderIP) : (Phantom(index: k - 1).name, Phantom(index: k - 1).ip)
    }

    func flowSourcePort(_ k: Int) -> UInt16 { Self.firstSourcePort + UInt16(k) }

    /// The 60-byte frame of flow k: sender's MAC → receiver's MAC, UDP to receiver:5201.
    func frame(flow k: Int) -> [UInt8] {
        Self.frame(from: Self.senderIP, sourcePort: flowSourcePort(k))
    }

    /// The receiver's answer on flow k (`--profile established`): receiver:5201
    /// back to the flow's source address and port, allowed by the link's
    /// reverse rule (Docker) or row 5 (bpfnet).
    func replyFrame(flow k: Int) -> [UInt8] {
        let source = flowSource(k)
        let mac = k == 0 ? Self.senderMAC : Phantom(index: k - 1).mac
        let payloadBytes = Self.packetBytes - 14 - 20 - 8
        return PacketBuilder.udpFrame(
            from: Endpoint(mac: Self.receiverMAC, ip: Self.receiverIP), to: Endpoint(mac: mac, ip: source.ip),
            sourcePort: Self.receiverPort, destinationPort: flowSourcePort(k),
            payload: Array(repeating: 0x72, count: payloadBytes))
    }

    /// A frame from an address that no link allows (bridge delivers it, filters drop it).
    func deniedFrame() -> [UInt8] {
        Self.frame(from: Self.strangerIP, sourcePort: Self.firstSourcePort)
    }

    static func frame(from source: IPv4Address, sourcePort: UInt16) -> [UInt8] {
        let payloadBytes = packetBytes - 14 - 20 - 8
        let frame = PacketBuilder.udpFrame(
            from: Endpoint(mac: senderMAC, ip: source), to: Endpoint(mac: receiverMAC, ip: receiverIP),
            sourcePort: sourcePort, destinationPort: receiverPort,
            payload: Array(repeating: 0x62, count: payloadBytes))
        precondition(frame.count == packetBytes)
        return frame
    }

    // MARK: Links

    /// The N links that carry no traffic: ordered pairs of phantoms taken
    /// diagonal by diagonal ((0,1), (1,2), ..., (m-1,0), (0,2), ...), so that
    /// consecutive rules differ in source address, as on a host whose
    /// containers started one after another.
    func decoyPairs(_ n: Int) -> [(parent: Int, child: Int)] {
        let m = phantomCount
        precondition(n <= m * (m - 1) || n == 0, "\(n) links need more than \(m) phantoms")
        var pairs: [(Int, Int)] = []
        pairs.reserveCapacity(n)
        var distance = 1
        while pairs.count < n {
            for parent in 0..<m where pairs.count < n {
                pairs.append((parent, (parent + distance) % m))
            }
            distance += 1
        }
        return pairs
    }

    /// Every link of a host with N links, in the order Docker appended their
    /// rules: the flows' links spread evenly, the last one after all N others.
    func links(_ n: Int) -> [BenchLink] {
        let decoys = decoyPairs(n).map { pair -> BenchLink in
            let parent = Phantom(index: pair.parent)
            let child = Phantom(index: pair.child)
            return BenchLink(
                parent: parent.name, child: child.name, parentIP: parent.ip, childIP: child.ip,
                port: child.exposedPort, flow: nil)
        }
        var result: [BenchLink] = []
        result.reserveCapacity(n + flows)
        var next = 0
        for k in 0..<flows {
            // Flow k goes after decoy floor((k+1)·N/K).
            let position = (k + 1) * n / flows
            while next < position {
                result.append(decoys[next])
                next += 1
            }
            let source = flowSource(k)
            result.append(
                BenchLink(
                    parent: source.name, child: Self.receiverName, parentIP: source.ip,
                    childIP: Self.receiverIP, port: Self.receiverPort, flow: k))
        }
        result.append(contentsOf: decoys[next...])
        return result
    }

    // MARK: bpfnet

    /// The policy bpfnet enforces on a host with N links (icc=false).
    func policy(links n: Int, portHook: PortHook, fastPath: Bool) -> Policy {
        var containers = [
            Container(name: Self.senderName, ip: Self.senderIP, mac: Self.senderMAC, port: Self.senderBridgePort),
            Container(
                name: Self.receiverName, ip: Self.receiverIP, mac: Self.receiverMAC, port: Self.receiverBridgePort,
                exposed: [PortSpec(Self.receiverPort, .udp)]),
        ]
        containers += phantoms.map {
            Container(name: $0.name, ip: $0.ip, mac: $0.mac, port: $0.port, exposed: [PortSpec($0.exposedPort, .udp)])
        }
        return Policy(
            bridge: Self.bridgeName, icc: false, ipForward: true, forwardPolicy: .drop, portHook: portHook,
            extInterfaces: [ExternalInterface(name: "ext0")], containers: containers,
            links: links(n).map { Link(parent: $0.parent, child: $0.child) }, fastPath: fastPath,
            // Docker's default for a user-defined network: icc on (as DockerRuleset writes them).
            networks: userNetworks.map { BridgeNetwork(name: $0.name, bridge: $0.bridge, icc: true) })
    }

    /// How many link rules bpfnet needs at most for N links (4 per link).
    func linkRules(forLinks n: Int) -> Int { (n + flows) * Self.linkRulesPerLink }

    /// Containers in every policy: sender, receiver, phantoms.
    var containerCount: Int { 2 + phantomCount }
}
