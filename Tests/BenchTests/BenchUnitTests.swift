// SPDX-License-Identifier: Apache-2.0
//
// The bench engine without a kernel: variant selection and its errors, the
// workload (links, flows, phantoms), Docker's ruleset, bpfnet's policy and
// its map footprint, the JSON schema, the table and the chart.

import BPFNetCore
import BPFNetShared
import BPFNetTestSupport
import Foundation
import XCTest

@testable import BPFNetBench

#if canImport(FoundationXML)
import FoundationXML
#endif

final class VariantSelectionTests: XCTestCase {
    func testEveryNamedVariantIsRegisteredInReportOrder() {
        XCTAssertEqual(
            BenchVariant.all.map(\.name),
            [
                "bridge", "docker-iptables-nft", "docker-nolinks", "docker-iptables-legacy", "bpfnet-nftables",
                "bpfnet-tc", "bpfnet-xdp", "bpfnet-fastpath", "bpfnet-fastpath-xdp", "bridge-empty-tc",
                "bridge-empty-xdp",
            ])
        XCTAssertEqual(
            BenchVariant.defaultSelection.map(\.name),
            [
                "bridge", "docker-iptables-nft", "docker-iptables-legacy", "bpfnet-nftables", "bpfnet-tc",
                "bpfnet-xdp", "bpfnet-fastpath",
            ])
    }

    func testSelectionAddsBridgeAndKeepsReportOrder() throws {
        let selected = try BenchVariant.select(["bpfnet-tc", " docker-iptables-nft"])
        XCTAssertEqual(selected.map(\.name), ["bridge", "docker-iptables-nft", "bpfnet-tc"])
    }

    func testCrossHostProfileHasItsOwnVariantsAndNoLinks() throws {
        XCTAssertEqual(
            try BenchVariant.select(["bpfnet-peers-fastpath"], profile: .crossHost).map(\.name),
            ["bridge", "bpfnet-peers-fastpath"])
        XCTAssertThrowsError(try BenchVariant.select(["bpfnet-tc"], profile: .crossHost)) { error in
            XCTAssertTrue((error as! BenchError).description.contains("docker-forward-accept"), "\(error)")
        }
        XCTAssertThrowsError(try BenchVariant.select(["bpfnet-peers"])) { error in
            XCTAssertTrue((error as! BenchError).isBadInput)
        }
        let crossHost = BenchVariant.defaultSelection(for: .crossHost)
        for (links, flows) in [([0, 100], 1), ([0], 2)] {
            let configuration = BenchConfiguration(
                variants: crossHost, links: links, flows: flows, profile: .crossHost, showProgress: false)
            XCTAssertThrowsError(try configuration.validateValues()) { error in
                XCTAssertTrue((error as! BenchError).description.contains("do not apply"), "\(error)")
            }
        }
        XCTAssertFalse(BenchVariant.named("docker-forward-accept")!.enforcesPolicy, "FORWARD ACCEPT filters nothing")
        XCTAssertTrue(BenchVariant.named("bpfnet-peers")!.enforcesPolicy)
        XCTAssertFalse(BenchVariant.bridge.enforcesPolicy)
    }

    func testUnknownNamesAreBadInputListingTheKnownOnes() {
        XCTAssertThrowsError(try BenchVariant.select(["bpfnet-tc", "iptables"])) { error in
            let error = error as! BenchError
            XCTAssertTrue(error.isBadInput)
            XCTAssertTrue(error.description.contains("'iptables'"), error.description)
            for variant in BenchVariant.all {
                XCTAssertTrue(error.description.contains(variant.name), error.description)
            }
        }
    }

    func testLinksParse() throws {
        XCTAssertEqual(try BenchConfiguration.parseLinks("1000,0,100,100"), [0, 100, 1000])
        for bad in ["", "1,,2", "-1", "1e3", "ten"] {
            XCTAssertThrowsError(try BenchConfiguration.parseLinks(bad), bad) { error in
                XCTAssertTrue((error as! BenchError).isBadInput)
            }
        }
    }

    func testTooManyLinksForTheMapsIsRejectedBeforeAnythingIsBuilt() {
        let limit = Int(BPFNET_MAX_LINK_RULES) / 4
        var configuration = BenchConfiguration(links: [0, limit], flows: 1)
        XCTAssertThrowsError(try configuration.checkMapCapacity()) { error in
            let message = (error as! BenchError).description
            XCTAssertTrue(message.contains("BPFNET_MAX_LINK_RULES"), message)
            XCTAssertTrue(message.contains("at most \(limit - 1)"), message)
        }
        configuration.links = [limit - 1]
        XCTAssertNoThrow(try configuration.checkMapCapacity())
        // Without a bpfnet variant the maps do not bound N.
        configuration.links = [limit * 2]
        configuration.variants = [.bridge]
        XCTAssertNoThrow(try configuration.validateValues())
    }

    func testNetworksAreChecked() {
        for bad in [0, BenchWorkload.maxNetworks + 1] {
            XCTAssertThrowsError(try BenchConfiguration(networks: bad).validateValues(), "\(bad)") { error in
                XCTAssertTrue("\(error)".contains("--networks \(bad)"), "\(error)")
            }
        }
        XCTAssertNoThrow(try BenchConfiguration(networks: 64).validateValues())
    }

    func testOtherValuesAreChecked() {
        for configuration in [
            BenchConfiguration(flows: 0), BenchConfiguration(flows: BenchWorkload.maxFlows + 1),
            BenchConfiguration(rounds: 0), BenchConfiguration(burstSeconds: 0), BenchConfiguration(cpu: 4096),
        ] {
            XCTAssertThrowsError(try configuration.validateValues()) { error in
                XCTAssertTrue((error as! BenchError).isBadInput)
            }
        }
    }
}

final class WorkloadTests: XCTestCase {
    func testPhantomsCoverTheLinksAndTheFlows() {
        XCTAssertEqual(BenchWorkload.phantomsNeeded(forLinks: 0), 0)
        XCTAssertEqual(BenchWorkload.phantomsNeeded(forLinks: 1), 2)
        XCTAssertEqual(BenchWorkload.phantomsNeeded(forLinks: 100), 11)
        XCTAssertEqual(BenchWorkload.phantomsNeeded(forLinks: 10000), 101)
        XCTAssertEqual(BenchWorkload(maxLinks: 0, flows: 8).phantomCount, 7)
    }

    func testOneFlowComesAfterEveryOtherLink() {
        let workload = BenchWorkload(maxLinks: 1000, flows: 1)
        let links = workload.links(1000)
        XCTAssertEqual(links.count, 1001)
        XCTAssertEqual(links.last?.flow, 0)
        XCTAssertEqual(links.last?.parentIP, BenchWorkload.senderIP)
        XCTAssertEqual(Set(links.map { "\($0.parent)>\($0.child)" }).count, 1001, "links are distinct")
        XCTAssertTrue(links.dropLast().allSatisfy { $0.flow == nil && $0.childIP != BenchWorkload.receiverIP })
        // Consecutive decoys differ in their parent (the source address a rule checks first).
        XCTAssertNotEqual(links[0].parent, links[1].parent)
    }

    func testFlowsAreSpreadThroughTheChain() {
        let workload = BenchWorkload(maxLinks: 100, flows: 4)
        let links = workload.links(100)
        XCTAssertEqual(links.count, 104)
        let positions = links.enumerated().filter { $0.element.flow != nil }.map(\.offset)
        XCTAssertEqual(positions, [25, 51, 77, 103])
        XCTAssertEqual(links.compactMap(\.flow), [0, 1, 2, 3])
        XCTAssertEqual(Set(links.compactMap { $0.flow == nil ? nil : $0.parentIP }).count, 4)
    }

    func testFramesAreSixtyByteUDPFromTheSenderOnePortPerFlow() {
        let workload = BenchWorkload(maxLinks: 0, flows: 3)
        for k in 0..<3 {
            let frame = workload.frame(flow: k)
            XCTAssertEqual(frame.count, 60)
            XCTAssertEqual(Array(frame[0..<6]), BenchWorkload.receiverMAC.array)
            XCTAssertEqual(Array(frame[6..<12]), BenchWorkload.senderMAC.array)
            XCTAssertEqual(frame[23], 17)
            let source = IPv4Address(
                UInt32(frame[26]) << 24 | UInt32(frame[27]) << 16 | UInt32(frame[28]) << 8 | UInt32(frame[29]))
            XCTAssertEqual(source, BenchWorkload.senderIP, "the port program drops another container's source")
            XCTAssertEqual(UInt16(frame[34]) << 8 | UInt16(frame[35]), BenchWorkload.firstSourcePort + UInt16(k))
            XCTAssertEqual(UInt16(frame[36]) << 8 | UInt16(frame[37]), BenchWorkload.receiverPort)
            XCTAssertEqual(PacketBuilder.internetChecksum(Array(frame[14..<34])), 0, "IPv4 header checksum")
        }
    }

    func testPolicyIsValidAndCompilesToFourRulesPerLink() throws {
        let workload = BenchWorkload(maxLinks: 1000, flows: 2)
        let policy = workload.policy(links: 1000, portHook: .tc, fastPath: false)
        XCTAssertFalse(policy.icc)
        XCTAssertEqual(policy.links.count, 1002)
        XCTAssertEqual(policy.containers.count, workload.containerCount)
        XCTAssertNoThrow(try policy.validate(bridge: IPv4InterfaceAddress("10.88.0.1/16")!))
        let state = try ControlPlaneFixture.compile(policy)
        XCTAssertLessThanOrEqual(state.links.count, workload.linkRules(forLinks: 1000))
        XCTAssertGreaterThanOrEqual(state.links.count, 3 * 1002)
        // The allowed flow is there, the stranger is not.
        let allowed = LinkRule(
            source: BenchWorkload.senderIP, destination: BenchWorkload.receiverIP,
            port: BenchWorkload.receiverPort, proto: 17, direction: .forward)
        XCTAssertTrue(state.links.contains(allowed))
        XCTAssertFalse(state.links.contains { $0.source == BenchWorkload.strangerIP })
    }

    func testPolicyVerdictsMatchTheBenchTraffic() throws {
        let workload = BenchWorkload(maxLinks: 100, flows: 2)
        let policy = workload.policy(links: 100, portHook: .tc, fastPath: false)
        let state = try ControlPlaneFixture.compile(policy)
        for k in 0..<2 {
            let source = workload.flowSource(k).ip
            XCTAssertTrue(
                state.links.contains(
                    LinkRule(
                        source: source, destination: BenchWorkload.receiverIP,
                        port: BenchWorkload.receiverPort, proto: 17, direction: .forward)))
        }
    }
}

final class DockerRulesetTests: XCTestCase {
    func testForwardChainHasDockersShapeAndOrder() {
        let workload = BenchWorkload(maxLinks: 10, flows: 1)
        let rules = DockerRuleset.render(links: workload.links(10))
        let forward = rules.split(separator: "\n").filter { $0.hasPrefix("-A FORWARD") }
        XCTAssertEqual(
            forward,
            [
                "-A FORWARD -j DOCKER-USER",
                "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
                "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-A FORWARD -o docker0 -j DOCKER",
                "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
                "-A FORWARD -i docker0 -o docker0 -j DROP",
            ])
        XCTAssertTrue(rules.contains(":FORWARD DROP [0:0]"))
        XCTAssertTrue(rules.contains("-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP"))
        XCTAssertTrue(rules.contains("-A DOCKER-USER -j RETURN"))
    }

    /// Each user-defined network puts Docker's four FORWARD rules above
    /// docker0's (newest first), and one isolation rule per network in
    /// STAGE-1 that every forwarded packet is tested against.
    func testNetworksAddDockersRulesAboveTheDefaultBridge() {
        let workload = BenchWorkload(maxLinks: 10, flows: 1, networks: 3)
        let networks = workload.userNetworks
        XCTAssertEqual(networks.map(\.bridge), ["br-net1", "br-net2"])
        XCTAssertEqual(networks.map(\.address.description), ["10.100.1.1/24", "10.100.2.1/24"])
        let rules = DockerRuleset.render(
            links: workload.links(10), networks: networks.map { ($0.bridge, $0.address.network) }
        ).split(separator: "\n")
        let forward = rules.filter { $0.hasPrefix("-A FORWARD") }
        XCTAssertEqual(forward.count, 6 + 8)
        XCTAssertEqual(forward[2], "-A FORWARD -o br-net2 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        XCTAssertEqual(forward[5], "-A FORWARD -i br-net2 -o br-net2 -j ACCEPT")
        XCTAssertEqual(forward[6], "-A FORWARD -o br-net1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        XCTAssertEqual(forward[10], "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        XCTAssertEqual(
            rules.filter { $0.hasPrefix("-A DOCKER-ISOLATION-STAGE-1") },
            [
                "-A DOCKER-ISOLATION-STAGE-1 -i br-net2 ! -o br-net2 -j DOCKER-ISOLATION-STAGE-2",
                "-A DOCKER-ISOLATION-STAGE-1 -i br-net1 ! -o br-net1 -j DOCKER-ISOLATION-STAGE-2",
                "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
                "-A DOCKER-ISOLATION-STAGE-1 -j RETURN",
            ])
        XCTAssertTrue(rules.contains("-A POSTROUTING -s 10.100.1.0/24 ! -o br-net1 -j MASQUERADE"))
        XCTAssertTrue(workload.networkLines().contains("addr add 10.100.2.1/24 dev br-net2"))
        // bpfnet gets the same networks, and stays within the compiler's limits.
        let policy = workload.policy(links: 10, portHook: .tc, fastPath: true)
        XCTAssertEqual(policy.networks.map(\.bridge), ["br-net1", "br-net2"])
    }

    /// The bench's ruleset is rule for rule what Docker2010Rules renders for
    /// the same containers, links and networks — and DockerOracleTests checks
    /// Docker2010Rules against `iptables-save` of a live dockerd 20.10. Only
    /// the DOCKER chain's order may differ (it follows the containers' start
    /// there, and all its rules accept).
    func testSameRulesAsTheRulesetCheckedAgainstALiveDockerd() throws {
        let workload = BenchWorkload(maxLinks: 20, flows: 2, networks: 3)
        let policy = workload.policy(links: 20, portHook: .tc, fastPath: false)
        let subnets = Dictionary(
            uniqueKeysWithValues: [(BenchWorkload.bridgeName, BenchWorkload.bridgeAddress.network)]
                + workload.userNetworks.map { ($0.bridge, $0.address.network) })
        func chains(_ rules: String) -> [String: [String]] {
            var table = ""
            var result: [String: [String]] = [:]
            for line in rules.split(separator: "\n").map(String.init) {
                if line.hasPrefix("*") { table = line }
                guard line.hasPrefix("-A ") else { continue }
                let chain = String(line.split(separator: " ")[1])
                result[table + " " + chain, default: []].append(line)
            }
            return result
        }
        let bench = chains(
            DockerRuleset.render(
                links: workload.links(20), networks: workload.userNetworks.map { ($0.bridge, $0.address.network) }))
        let docker = chains(Docker2010Rules.render(policy, subnets: subnets))
        XCTAssertEqual(Set(bench.keys), Set(docker.keys))
        for (chain, rules) in docker {
            if chain == "*filter DOCKER" {
                XCTAssertEqual(bench[chain].map(Set.init), Set(rules), chain)
                XCTAssertEqual(bench[chain]?.count, rules.count, chain)
            } else {
                XCTAssertEqual(bench[chain], rules, chain)
            }
        }
        // Without links (docker-nolinks): icc on, no DOCKER rules at all.
        let noLinks = chains(DockerRuleset.render(links: [], icc: true))
        XCTAssertNil(noLinks["*filter DOCKER"])
        XCTAssertEqual(noLinks["*filter FORWARD"]?.last, "-A FORWARD -i docker0 -o docker0 -j ACCEPT")
    }

    func testEachLinkIsDockersRulePairWithTheMatchingOneLast() {
        let workload = BenchWorkload(maxLinks: 100, flows: 1)
        let rules = DockerRuleset.render(links: workload.links(100)).split(separator: "\n")
        let docker = rules.filter { $0.hasPrefix("-A DOCKER -s") }
        XCTAssertEqual(docker.count, 202)
        XCTAssertEqual(
            docker[200],
            "-A DOCKER -s 10.88.0.2/32 -d 10.88.0.3/32 -i docker0 -o docker0 -p udp -m udp --dport 5201 -j ACCEPT")
        XCTAssertEqual(
            docker[201],
            "-A DOCKER -s 10.88.0.3/32 -d 10.88.0.2/32 -i docker0 -o docker0 -p udp -m udp --sport 5201 -j ACCEPT")
        XCTAssertFalse(docker.dropLast(2).contains { $0.contains("-s 10.88.0.2/32") })
    }
}

final class ReportTests: XCTestCase {
    static func sampleReport(lost: Bool = false) -> BenchReport {
        var results: [BenchResult] = []
        let costs: [String: [Double]] = [
            "bridge": [700, 710, 705, 720], "docker-iptables-nft": [1100, 9000, 78000, 744000],
            "docker-iptables-legacy": [930, 1700, 7600, 85000], "bpfnet-tc": [790, 800, 795, 810],
            "bpfnet-xdp": [760, 770, 790, 860],
        ]
        for (index, links) in [0, 100, 1000, 10000].enumerated() {
            for variant in ["bridge", "docker-iptables-nft", "docker-iptables-legacy", "bpfnet-tc", "bpfnet-xdp"] {
                let cost = costs[variant]![index]
                let ratio = cost / costs["bridge"]![index]
                let sent: UInt64 = 1_000_000
                results.append(
                    BenchResult(
                        variant: variant, links: links, flows: 1,
                        nsPerPacket: Spread(min: cost * 0.9, median: cost, max: cost * 1.2), mppsPerCore: 1000 / cost,
                        sent: sent, delivered: lost && variant == "bpfnet-xdp" && links == 100 ? sent - 7 : sent,
                        ratioToBridge: Spread(min: ratio * 0.97, median: ratio, max: ratio * 1.05)))
            }
        }
        return BenchReport(profile: "live", packetBytes: 60, rounds: 50, results: results)
    }

    func testSpread() {
        XCTAssertEqual(Spread([3, 1, 2]), Spread(min: 1, median: 2, max: 3))
        XCTAssertEqual(Spread([4, 1, 2, 3]), Spread(min: 1, median: 2.5, max: 4))
    }

    func testJSONFollowsTheIssuesSchema() throws {
        let data = try Self.sampleReport().jsonData()
        XCTAssertEqual(BenchSchema.problems(in: data), [])
    }

    func testSchemaCheckerCatchesDeviations() throws {
        var object = try JSONSerialization.jsonObject(with: Self.sampleReport().jsonData()) as! [String: Any]
        var results = object["results"] as! [[String: Any]]
        results[0]["extra"] = 1
        results[1].removeValue(forKey: "ratioToBridge")
        object["results"] = results
        object["date"] = "today"
        let problems = BenchSchema.problems(in: try JSONSerialization.data(withJSONObject: object))
        XCTAssertEqual(problems.count, 3, "\(problems)")
    }

    func testFailuresNameTheVariantAndTheLoss() {
        let report = Self.sampleReport(lost: true)
        XCTAssertEqual(report.failures, ["bpfnet-xdp at N=100: 7 of 1000000 packets were not delivered"])
        let table = BenchTable.render(report, context: BenchContext(BenchConfiguration()))
        XCTAssertTrue(table.contains("LOST 7 of 1000000"), table)
        XCTAssertTrue(table.contains("744,000"), table)
    }

    func testChartIsWellFormedAndSelfExplaining() throws {
        let svg = BenchChart.render(Self.sampleReport(lost: true), context: BenchContext(BenchConfiguration()))
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssertTrue(parser.parse(), "SVG is not well-formed XML: \(String(describing: parser.parserError))")
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 5, "one line per variant")
        for text in [
            "links on the host", "CPU time per packet", "bpfnet-tc: ", "docker-iptables-nft  744 µs",
            "1,000", "10,000", "lost 7",
        ] {
            XCTAssertTrue(svg.contains(text), "missing '\(text)'")
        }
    }
}

/// `--direction ingress`: Docker's rules for N published ports, bpfnet's
/// policy for them, the new-flow frames and the options.
final class IngressTests: XCTestCase {
    /// dockerd 20.10 writes, per published port, a DNAT in nat DOCKER, an
    /// ACCEPT in filter DOCKER and a hairpin masquerade; the measured port
    /// (the receiver's 5201) comes after all N others in both chains.
    func testDockerRulesHaveOneDNATAndOneAcceptPerPublishedPortTheMeasuredOneLast() {
        let workload = BenchWorkload(maxLinks: 100, flows: 1)
        var table = ""
        var chains: [String: [String]] = [:]
        for line in workload.ingressDockerRules(ports: 100).split(separator: "\n").map(String.init) {
            if line.hasPrefix("*") { table = line }
            guard line.hasPrefix("-A ") else { continue }
            chains[table + " " + line.split(separator: " ")[1], default: []].append(line)
        }
        let dnat = chains["*nat DOCKER"]!.filter { $0.contains("-j DNAT") }
        XCTAssertEqual(dnat.count, 101)
        XCTAssertEqual(
            dnat.last, "-A DOCKER ! -i docker0 -p udp -m udp --dport 5201 -j DNAT --to-destination 10.88.0.3:5201")
        XCTAssertEqual(Set(dnat.map { $0.split(separator: " ")[10] }).count, 101, "one host port each")
        XCTAssertEqual(chains["*nat DOCKER"]!.first, "-A DOCKER -i docker0 -j RETURN")
        XCTAssertEqual(chains["*nat PREROUTING"], ["-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"])
        let accepts = chains["*filter DOCKER"]!
        XCTAssertEqual(accepts.count, 101)
        XCTAssertEqual(
            accepts.last, "-A DOCKER -d 10.88.0.3/32 ! -i docker0 -o docker0 -p udp -m udp --dport 5201 -j ACCEPT")
        // Port g is the phantom g mod m's, so neighbouring rules name different containers.
        XCTAssertEqual(
            accepts[0], "-A DOCKER -d 10.88.1.1/32 ! -i docker0 -o docker0 -p udp -m udp --dport 20000 -j ACCEPT")
        let hairpins = chains["*nat POSTROUTING"]!.filter { $0.contains("/32 -d") }
        XCTAssertEqual(hairpins.count, 101)
        XCTAssertEqual(
            hairpins.last, "-A POSTROUTING -s 10.88.0.3/32 -d 10.88.0.3/32 -p udp -m udp --dport 5201 -j MASQUERADE")
        XCTAssertTrue(chains["*nat POSTROUTING"]!.contains("-A POSTROUTING -s 10.88.0.0/16 ! -o docker0 -j MASQUERADE"))
        XCTAssertTrue(chains["*filter FORWARD"]!.contains("-A FORWARD -o docker0 -j DOCKER"))
        // N = 0: only the measured port.
        let empty = workload.ingressDockerRules(ports: 0)
        XCTAssertEqual(empty.split(separator: "\n").filter { $0.contains("-j DNAT") }.count, 1)
    }

    func testPolicyPublishesEveryPortAndCompiles() throws {
        let workload = BenchWorkload(maxLinks: 1000, flows: 1)
        let policy = workload.ingressPolicy(ports: 1000)
        XCTAssertEqual(policy.containers.last?.name, BenchWorkload.receiverName)
        XCTAssertEqual(policy.containers.flatMap(\.published).count, 1001)
        XCTAssertEqual(policy.extInterfaces.map(\.name), ["ext0"])
        XCTAssertTrue(policy.fastPath, "as `bpfnet load` sets it up")
        XCTAssertEqual(policy.nat, .netfilter)
        XCTAssertNoThrow(try policy.validate(bridge: BenchWorkload.bridgeAddress))
        // bpfnet-ebpf-nat: the same host with the eBPF NAT.
        let ebpf = workload.ingressPolicy(ports: 1000, nat: .ebpf)
        XCTAssertEqual(ebpf.nat, .ebpf)
        XCTAssertNoThrow(try ebpf.validate(bridge: BenchWorkload.bridgeAddress))
        XCTAssertEqual(try ControlPlaneFixture.compile(ebpf).published.count, 1001)
        let state = try ControlPlaneFixture.compile(policy)
        XCTAssertEqual(state.published.count, 1001)
        XCTAssertEqual(workload.ingressPublished(ports: 1000).count, 1001)
        // The floor's NAT table maps every host port.
        let nat = NATRuleset(
            bridge: BenchWorkload.bridgeName, bridgeSubnet: BenchWorkload.bridgeAddress.network,
            published: workload.ingressPublished(ports: 1000)
        ).render()
        XCTAssertTrue(nat.contains("udp . 5201 : 10.88.0.3 . 5201"))
        XCTAssertTrue(nat.contains("udp . 20999 : "))
    }

    /// A rewritten frame is byte for byte the frame PacketBuilder builds from
    /// that source (checksums included), and the sources of a burst never repeat.
    func testNewFlowFramesAreCompleteAndNeverRepeatInABurst() {
        let workload = BenchWorkload(maxLinks: 0, flows: 1)
        let template = NewFlowTemplate(workload.ingressFrame(flow: 0))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: template.frame.count, alignment: 8)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: template.frame)
        var sources = NewFlowSources()
        var seen = Set<String>()
        for index in 0..<70000 {
            let source = sources.take()
            XCTAssertTrue(seen.insert("\(source.address):\(source.port)").inserted)
            if index % 997 == 0 || index == 69999 || source.port == 0xFFFF {
                template.rewrite(buffer, source: source)
                XCTAssertEqual(
                    Array(buffer),
                    BenchWorkload.ingressFrame(
                        from: source.address, sourcePort: source.port, to: BenchWorkload.hostExternalAddress.address),
                    "\(source)")
            }
        }
        XCTAssertEqual(NewFlowSources.source(0).address, IPv4Address(198, 51, 100, 3))
        XCTAssertEqual(NewFlowSources.source(NewFlowSources.count - 1).address, IPv4Address(198, 51, 100, 254))
        XCTAssertGreaterThan(Int(NewFlowSources.count), 4 * 262144, "more than a burst's worth")
    }

    func testOptions() throws {
        XCTAssertEqual(
            try BenchVariant.select(["bpfnet-ebpf-nat", "bpfnet-netfilter-nat"], direction: .ingress).map(\.name),
            ["bridge", "bpfnet-netfilter-nat", "bpfnet-ebpf-nat"])
        XCTAssertLessThanOrEqual(
            ConntrackTable.newFlowsPerBurst() * 2, Int(BPFNET_MAX_NAT_ENTRIES) / 2, "bn_nat never fills in a burst")
        XCTAssertThrowsError(try BenchVariant.select(["bpfnet-tc"], direction: .ingress)) { error in
            XCTAssertTrue((error as! BenchError).description.contains("--direction ingress"), "\(error)")
        }
        // The ingress reference carries the NAT a published port needs.
        let configuration = BenchConfiguration(
            variants: [.bridge], links: [0, 1000], profile: .new, direction: .ingress, showProgress: false)
        XCTAssertTrue(configuration.variants[0].summary.contains("DNAT"))
        XCTAssertNoThrow(try configuration.validateValues())
        XCTAssertEqual(
            BenchConfiguration(profile: .new, direction: .ingress, showProgress: false).variants.map(\.name),
            BenchVariant.ingress.filter { !$0.isDiagnostic }.map(\.name))
        XCTAssertTrue(BenchVariant.ingress.contains { $0.name == "bridge-empty-xdp" && $0.isDiagnostic })
        for bad in [
            BenchConfiguration(links: [0], profile: .live, direction: .ingress, showProgress: false),
            BenchConfiguration(links: [0], flows: 2, profile: .new, direction: .ingress, showProgress: false),
            BenchConfiguration(
                links: [0], networks: 2, profile: .established, direction: .ingress, showProgress: false),
            BenchConfiguration(
                links: [BenchWorkload.maxPublishedPorts + 1], profile: .new, direction: .ingress, showProgress: false),
            BenchConfiguration(links: [0], profile: .new, showProgress: false),
        ] {
            XCTAssertThrowsError(try bad.validateValues()) { error in
                XCTAssertTrue((error as! BenchError).isBadInput, "\(error)")
            }
        }
        XCTAssertNoThrow(
            try BenchConfiguration(
                links: [0, 10], flows: 4, profile: .established, direction: .ingress, showProgress: false
            )
            .validateValues())
    }
}
