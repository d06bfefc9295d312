// SPDX-License-Identifier: Apache-2.0
//
// Bridge networks and containers on several of them, decoded from answers recorded from
// dockerd 20.10 (API 1.41, `--iptables=false`): `GET /networks?filters={"driver":["bridge"]}`
// and the unfiltered list, a container on two user networks, the list of running
// containers, and the network events of a network's life. networks_bridge_29_shape.json is
// the same networks in the shape API 1.52 (29.x) documents (EnableIPv4, Containers left
// out of lists, the default bridge's gateway in IPAM): no 29.x daemon was at hand to record.

import BPFNetCore
import Foundation
import XCTest

@testable import DockerWatcher

final class NetworkDecodingTests: XCTestCase {
    private func byName(_ networks: [DockerBridgeNetwork]) -> [String: DockerBridgeNetwork] {
        Dictionary(uniqueKeysWithValues: networks.map { ($0.name, $0) })
    }

    func testBridgeNetworks2010() throws {
        let networks = try DockerBridgeNetwork.list(fromJSON: Fixture.data("networks_bridge_20.10.json"))
        XCTAssertEqual(networks.map(\.name), ["bridge", "appnet", "quiet", "sealed", "dual"])
        let all = byName(networks)

        let bridge = try XCTUnwrap(all["bridge"])
        XCTAssertTrue(bridge.isDefaultBridge)
        XCTAssertEqual(bridge.bridgeName, "docker0")
        XCTAssertFalse(bridge.ipMasquerade, "dockerd --iptables=false says so on the default bridge")
        XCTAssertNil(bridge.hostBindingIPv4, "0.0.0.0 means none")

        let appnet = try XCTUnwrap(all["appnet"])
        XCTAssertFalse(appnet.isDefaultBridge)
        XCTAssertEqual(appnet.bridgeName, "br-c1722fc7c3fa", "br- and the ID's first 12 characters")
        XCTAssertEqual(appnet.subnet, IPv4CIDR("172.18.0.0/16"))
        XCTAssertEqual(appnet.gateway, IPv4Address("172.18.0.1"))
        XCTAssertEqual(appnet.model, BridgeNetwork(name: "appnet", bridge: "br-c1722fc7c3fa"))

        let quiet = try XCTUnwrap(all["quiet"])
        XCTAssertFalse(quiet.iccEnabled)
        XCTAssertEqual(quiet.subnet, IPv4CIDR("10.77.0.0/24"))
        XCTAssertNil(quiet.gateway, "20.10 leaves a given subnet's gateway out")
        XCTAssertEqual(quiet.model, BridgeNetwork(name: "quiet", bridge: "br-5d52b40d63b3", icc: false))

        let sealed = try XCTUnwrap(all["sealed"])
        XCTAssertEqual(sealed.bridgeName, "br-sealed", "com.docker.network.bridge.name wins")
        XCTAssertTrue(sealed.internal)
        XCTAssertFalse(sealed.ipMasquerade)
        XCTAssertEqual(sealed.hostBindingIPv4, IPv4Address("10.1.2.3"))
        XCTAssertEqual(
            sealed.model, BridgeNetwork(name: "sealed", bridge: "br-sealed", internal: true, masquerade: false),
            "host_binding_ipv4 moves published ports, not the SNAT source")

        let dual = try XCTUnwrap(all["dual"])
        XCTAssertTrue(dual.enableIPv6)
        XCTAssertEqual(dual.subnet, IPv4CIDR("172.20.0.0/16"), "the IPv6 subnet does not concern IPv4")
        XCTAssertTrue(networks.allSatisfy(\.warnings.isEmpty), "\(networks.map(\.warnings))")
    }

    func testOtherDriversAreSkipped() throws {
        var list = try JSONSerialization.jsonObject(with: Fixture.data("networks_all_20.10.json")) as! [[String: Any]]
        XCTAssertEqual(Set(list.compactMap { $0["Driver"] as? String }), ["bridge", "host", "null"])
        // A daemon that ignored the filter, with a macvlan and an overlay network too.
        var macvlan = list[0]
        macvlan["Name"] = "lan"
        macvlan["Driver"] = "macvlan"
        macvlan["Options"] = ["parent": "eth0"]
        var overlay = macvlan
        overlay["Name"] = "swarmnet"
        overlay["Driver"] = "overlay"
        overlay["Scope"] = "swarm"
        list += [macvlan, overlay]
        let networks = try DockerBridgeNetwork.list(fromJSON: JSONSerialization.data(withJSONObject: list))
        XCTAssertEqual(networks.map(\.name), ["bridge", "appnet", "quiet", "sealed", "dual"])
    }

    func testBridgeNetworks29Shape() throws {
        let networks = try DockerBridgeNetwork.list(fromJSON: Fixture.data("networks_bridge_29_shape.json"))
        let all = byName(networks)
        XCTAssertEqual(networks.map(\.name), ["bridge", "appnet", "quiet", "sealed"])
        XCTAssertEqual(all["bridge"]?.gateway, IPv4Address("172.17.0.1"))
        XCTAssertTrue(all["bridge"]?.ipMasquerade ?? false)
        XCTAssertEqual(all["appnet"]?.bridgeName, "br-c1722fc7c3fa")
        XCTAssertEqual(all["quiet"]?.hostIPv4, IPv4Address("203.0.113.10"))
        XCTAssertEqual(
            all["quiet"]?.model,
            BridgeNetwork(
                name: "quiet", bridge: "br-5d52b40d63b3", icc: false, hostIPv4: IPv4Address("203.0.113.10")),
            "com.docker.network.host_ipv4 is the SNAT source")
        XCTAssertTrue(all["sealed"]?.internal ?? false)
    }

    func testBadNetworkValuesNameTheirPath() throws {
        var list =
            try JSONSerialization.jsonObject(with: Fixture.data("networks_bridge_20.10.json")) as! [[String: Any]]
        var ipam = list[1]["IPAM"] as! [String: Any]
        ipam["Config"] = [["Subnet": "172.18.0.0/33"]]
        list[1]["IPAM"] = ipam
        XCTAssertThrowsError(
            try DockerBridgeNetwork.list(fromJSON: JSONSerialization.data(withJSONObject: list))
        ) { error in
            XCTAssertTrue("\(error)".contains("[1].IPAM.Config[0].Subnet"), "\(error)")
        }
        list = try JSONSerialization.jsonObject(with: Fixture.data("networks_bridge_20.10.json")) as! [[String: Any]]
        list[2]["Options"] = ["com.docker.network.bridge.enable_icc": "maybe"]
        let networks = try DockerBridgeNetwork.list(fromJSON: JSONSerialization.data(withJSONObject: list))
        XCTAssertTrue(networks[2].iccEnabled, "an unreadable flag keeps Docker's default")
        XCTAssertEqual(networks[2].warnings.count, 1)
    }

    func testContainerOnTwoNetworks2010() throws {
        let container = try DockerContainer(inspectJSON: Fixture.data("inspect_two_networks_20.10.json"))
        XCTAssertEqual(container.name, "c1")
        XCTAssertEqual(container.networkMode, "appnet")
        XCTAssertNil(container.bridge)
        XCTAssertFalse(container.isRunningOnDefaultBridge)
        XCTAssertTrue(container.isRunningOnANetwork)
        XCTAssertEqual(container.primaryNetwork, "appnet")
        XCTAssertEqual(Set(container.networks.keys), ["appnet", "quiet"])
        XCTAssertEqual(container.networks["appnet"]?.ip, IPv4Address("172.18.0.2"))
        XCTAssertEqual(container.networks["appnet"]?.mac, MACAddress("02:42:ac:12:00:02"))
        XCTAssertEqual(container.networks["appnet"]?.networkID?.prefix(12), "c1722fc7c3fa")
        XCTAssertEqual(container.networks["quiet"]?.ip, IPv4Address("10.77.0.2"))
        XCTAssertEqual(container.networks["quiet"]?.prefixLength, 24)
        XCTAssertEqual(container.networks["quiet"]?.networkID?.prefix(12), "5d52b40d63b3")
    }

    func testContainerOnASecondNetwork29() throws {
        var object = try Fixture.json(Fixture.completed("inspect_t1_29_v1.55.json"))
        let networks = (object["NetworkSettings"] as! [String: Any])["Networks"] as! [String: Any]
        var app = networks["bridge"] as! [String: Any]
        app["NetworkID"] = "c1722fc7c3fabe5e96a8441addc0bc7d6f320c2fe718b5bf990d1de124e466dc"
        app["IPAddress"] = "172.18.0.5"
        app["Gateway"] = "172.18.0.1"
        app["MacAddress"] = "7a:11:22:33:44:55"
        app["DNSNames"] = ["t1", "ad551d627eb2"]
        Fixture.set(&object, "NetworkSettings.Networks.appnet", app)
        Fixture.set(&object, "NetworkSettings.Networks.hostnet", ["IPAddress": "", "MacAddress": ""])
        let container = try DockerContainer(inspectJSON: Fixture.data(object))
        XCTAssertEqual(Set(container.networks.keys), ["bridge", "appnet"], "an endpoint without an address is none")
        XCTAssertEqual(container.networks["appnet"]?.mac, MACAddress("7a:11:22:33:44:55"))
        XCTAssertEqual(container.primaryNetwork, "bridge")
    }

    func testABadSecondEndpointNamesItsNetwork() throws {
        var object = try Fixture.json(Fixture.data("inspect_two_networks_20.10.json"))
        Fixture.set(&object, "NetworkSettings.Networks.quiet.IPAddress", "10.77.0.300")
        XCTAssertThrowsError(try DockerContainer(inspectJSON: Fixture.data(object))) { error in
            XCTAssertTrue("\(error)".contains("NetworkSettings.Networks.quiet.IPAddress"), "\(error)")
        }
    }

    func testRunningContainersWithTheirNetworks2010() throws {
        let list = try DockerContainerSummary.list(fromJSON: Fixture.data("containers_list_networks_20.10.json"))
        let byName = Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
        XCTAssertEqual(byName["c1"]?.addressedNetworks, ["appnet", "quiet"])
        XCTAssertNil(byName["c1"]?.bridgeIP)
        XCTAssertEqual(byName["c2"]?.addressedNetworks, ["bridge"])
        XCTAssertTrue(list.allSatisfy(\.isAddressed))
    }

    func testNetworkEvents2010() throws {
        let events = try Fixture.lines("events_networks_20.10.jsonl").map { try DockerEvent(json: $0) }
        XCTAssertEqual(
            events.map { "\($0.action)" },
            ["create", "connect", "disconnect", "disconnect", "connect", "disconnect", "destroy"])
        XCTAssertTrue(events.allSatisfy(\.isBridgeNetworkEvent))
        XCTAssertTrue(events.allSatisfy { $0.networkName == "later" })
        XCTAssertNil(events[0].containerID, "a network's own event is about no container")
        XCTAssertEqual(events[1].containerID?.prefix(12), "1036e9311dec")
        XCTAssertFalse(events[1].isDefaultBridgeNetworkEvent)
        var macvlan = events[1]
        macvlan.attributes["type"] = "macvlan"
        XCTAssertFalse(macvlan.isBridgeNetworkEvent)
    }
}
