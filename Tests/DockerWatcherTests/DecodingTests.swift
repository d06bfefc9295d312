// SPDX-License-Identifier: Apache-2.0

import BPFNetCore
import Foundation
import XCTest

@testable import DockerWatcher

final class DecodingTests: XCTestCase {
    // MARK: Recorded answers, 20.10 (API 1.41)

    func testInspectChildWithPublishedPorts() throws {
        let container = try DockerContainer(inspectJSON: Fixture.data("inspect_cb.json"))
        XCTAssertEqual(container.id, "c9ce3c3ed0620ea3eab3ea90318e156318fa32f377c2161e23ce29c9f4f0fdf4")
        XCTAssertEqual(container.name, "cb")
        XCTAssertTrue(container.running)
        XCTAssertEqual(container.pid, 10701)
        XCTAssertEqual(container.networkMode, "default")
        XCTAssertTrue(container.usesDefaultBridgeMode)
        XCTAssertTrue(container.isRunningOnDefaultBridge)
        XCTAssertEqual(
            container.bridge,
            DockerBridgeEndpoint(
                ip: IPv4Address(172, 17, 0, 3), prefixLength: 16, mac: MACAddress("02:42:ac:11:00:03"),
                gateway: IPv4Address(172, 17, 0, 1),
                endpointID: "3f9e6f762588df4e09382a32e406f1063d07b8a6ec25a60e813fe75a78e1aaed",
                networkID: "ffd9a5165dd5dc49db620e8cb901934bda1a9d32703693b5c53ccbc546b2030a"))
        XCTAssertEqual(container.links, [])
        XCTAssertEqual(container.exposedPorts, [PortSpec(80, .tcp), PortSpec(5353, .udp)])
        // The "::" bindings are dropped: the bridge is IPv4. "0.0.0.0" means every address.
        XCTAssertEqual(
            container.publishedPorts,
            [
                PublishedPort(hostIP: nil, hostPort: 8080, containerPort: 80, proto: .tcp),
                PublishedPort(hostIP: nil, hostPort: 5353, containerPort: 5353, proto: .udp),
            ])
        XCTAssertEqual(container.warnings, [])
    }

    func testInspectParentWithLink() throws {
        let container = try DockerContainer(inspectJSON: Fixture.data("inspect_cc.json"))
        XCTAssertEqual(container.name, "cc")
        XCTAssertEqual(container.pid, 10803)
        XCTAssertEqual(container.bridge?.ip, IPv4Address(172, 17, 0, 4))
        XCTAssertEqual(container.bridge?.mac, MACAddress("02:42:ac:11:00:04"))
        // "/cb:/cc/b" sits in the parent's inspect; its first element is the child.
        XCTAssertEqual(container.links, [DockerLinkDeclaration(child: "cb", parent: "cc", alias: "b")])
        XCTAssertEqual(container.exposedPorts, [])  // no ExposedPorts key at all
        XCTAssertEqual(container.publishedPorts, [])  // Ports {} and PortBindings {}
        XCTAssertEqual(container.warnings, [])
    }

    func testInspectWithTwoLinks() throws {
        let container = try DockerContainer(inspectJSON: Fixture.completed("inspect_cli2_links.json"))
        XCTAssertEqual(container.name, "cli2")
        XCTAssertEqual(
            container.links,
            [
                DockerLinkDeclaration(child: "srv1", parent: "cli2", alias: "s1"),
                DockerLinkDeclaration(child: "srv2", parent: "cli2", alias: "s2"),
            ])
        XCTAssertNil(container.bridge)  // the recording has no NetworkSettings
        XCTAssertFalse(container.isRunningOnDefaultBridge)
    }

    func testContainerList() throws {
        let list = try DockerContainerSummary.list(fromJSON: Fixture.data("containers_list.json"))
        XCTAssertEqual(list.map(\.name), ["cc", "cb", "ca"])
        // A child's Names include its parents' aliases; the own name is the one without a slash.
        XCTAssertEqual(list[1].names, ["cb", "cc/b"])
        XCTAssertEqual(
            list.map(\.bridgeIP), [IPv4Address(172, 17, 0, 4), IPv4Address(172, 17, 0, 3), IPv4Address(172, 17, 0, 2)])
        XCTAssertEqual(list.map(\.state), ["running", "running", "running"])
        XCTAssertEqual(list[0].networkMode, "default")
        XCTAssertEqual(list[0].id, "b4962968ffe82dfa03cea932e4cbf08bc195c34d4f3ae30086cfe1260243dec8")
    }

    func testBridgeNetwork() throws {
        let network = try DockerBridgeNetwork(json: Fixture.data("network_bridge.json"))
        XCTAssertEqual(network.name, "bridge")
        XCTAssertEqual(network.id, "ffd9a5165dd5dc49db620e8cb901934bda1a9d32703693b5c53ccbc546b2030a")
        XCTAssertEqual(network.bridgeName, "docker0")
        XCTAssertTrue(network.iccEnabled)
        XCTAssertTrue(network.ipMasquerade)
        XCTAssertEqual(network.subnet, IPv4CIDR("172.17.0.0/16"))
        XCTAssertNil(network.gateway)  // 20.10 records only the subnet for the default bridge
        XCTAssertEqual(network.endpoints.count, 3)
        XCTAssertEqual(
            network.endpoints["a08407622bdb2e6622cdd46a7b0592c9116486e531413bc4d96d97ac6f5fb63f"],
            DockerNetworkEndpoint(
                name: "ca", ip: IPv4Address(172, 17, 0, 2), prefixLength: 16,
                mac: MACAddress("02:42:ac:11:00:02")))
        XCTAssertEqual(network.warnings, [])
    }

    func testBridgeNetworkWithIccOffAndGateway() throws {
        var object = try Fixture.object("network_bridge.json")
        var options = object["Options"] as! [String: Any]
        options["com.docker.network.bridge.enable_icc"] = "false"
        options["com.docker.network.bridge.name"] = "br-test"
        object["Options"] = options
        object["IPAM"] = ["Config": [["Subnet": "fd00::/64"], ["Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"]]]
        let network = try DockerBridgeNetwork(json: Fixture.data(object))
        XCTAssertFalse(network.iccEnabled)
        XCTAssertEqual(network.bridgeName, "br-test")
        XCTAssertEqual(network.subnet, IPv4CIDR("10.9.0.0/24"))
        XCTAssertEqual(network.gateway, IPv4Address(10, 9, 0, 1))
    }

    func testBridgeNetworkWithoutOptions() throws {
        var object = try Fixture.object("network_bridge.json")
        object["Options"] = NSNull()
        object["IPAM"] = ["Config": NSNull()]
        object["Containers"] = NSNull()
        let network = try DockerBridgeNetwork(json: Fixture.data(object))
        XCTAssertEqual(network.bridgeName, "docker0")
        XCTAssertTrue(network.iccEnabled)
        XCTAssertNil(network.subnet)
        XCTAssertEqual(network.endpoints, [:])
    }

    func testVersion() throws {
        let version = try DockerVersionInfo(json: Fixture.data("version.json"))
        XCTAssertEqual(version.version, "20.10.24+dfsg1")
        XCTAssertEqual(version.apiVersion, DockerAPIVersion(1, 41))
        XCTAssertEqual(version.minAPIVersion, DockerAPIVersion(1, 12))
        XCTAssertEqual(version.os, "linux")
    }

    func testInfo() throws {
        let info = try DockerDaemonInfo(json: Fixture.data("info_subset.json"))
        XCTAssertEqual(info.serverVersion, "20.10.24+dfsg1")
        XCTAssertEqual(info.ipv4Forwarding, true)
        XCTAssertEqual(info.bridgeNfIptables, true)
        XCTAssertEqual(info.dockerRootDir, "/var/lib/docker")
    }

    // MARK: Recorded answers, 29.x

    func testInspect29WithAPI155HasNoTopLevelAddress() throws {
        let object = try Fixture.object("inspect_t1_29_v1.55.json")
        let settings = object["NetworkSettings"] as! [String: Any]
        XCTAssertNil(settings["IPAddress"], "the recording should show 1.52+ without the top-level copy")
        let container = try DockerContainer(inspectJSON: Fixture.completed("inspect_t1_29_v1.55.json"))
        XCTAssertEqual(container.name, "t1")
        XCTAssertEqual(container.bridge?.ip, IPv4Address(172, 17, 0, 2))
        XCTAssertEqual(container.bridge?.mac, MACAddress("52:2b:e8:e0:11:a6"))  // 29.x: random, not 02:42:<ip>
        XCTAssertEqual(container.exposedPorts, [PortSpec(80, .tcp)])
        XCTAssertEqual(container.publishedPorts, [PublishedPort(hostPort: 8080, containerPort: 80, proto: .tcp)])
        XCTAssertEqual(container.links, [])  // Links: null
    }

    func testInspect29WithAPI141() throws {
        let container = try DockerContainer(inspectJSON: Fixture.completed("inspect_t1_29_v1.41.json"))
        XCTAssertEqual(container.bridge?.ip, IPv4Address(172, 17, 0, 2))
        XCTAssertEqual(container.bridge?.mac, MACAddress("52:2b:e8:e0:11:a6"))
        XCTAssertEqual(container.exposedPorts, [])
    }

    func testTopLevelAddressIsNeverUsed() throws {
        var object = try Fixture.json(Fixture.completed("inspect_t1_29_v1.41.json"))
        Fixture.set(&object, "NetworkSettings.IPAddress", "10.99.99.99")
        Fixture.set(&object, "NetworkSettings.MacAddress", "02:00:00:00:00:99")
        let container = try DockerContainer(inspectJSON: Fixture.data(object))
        XCTAssertEqual(container.bridge?.ip, IPv4Address(172, 17, 0, 2))
        XCTAssertEqual(container.bridge?.mac, MACAddress("52:2b:e8:e0:11:a6"))

        // And a 1.41 answer whose Networks lack the bridge is not on the bridge, top-level copy or not.
        Fixture.set(&object, "NetworkSettings.Networks", ["other": ["IPAddress": "10.1.0.2"]])
        XCTAssertNil(try DockerContainer(inspectJSON: Fixture.data(object)).bridge)
    }

    // MARK: Hand-made variants

    func testMissingNetworksIsNotOnTheBridge() throws {
        var object = try Fixture.object("inspect_cb.json")
        Fixture.set(&object, "NetworkSettings.Networks", nil)
        let container = try DockerContainer(inspectJSON: Fixture.data(object))
        XCTAssertNil(container.bridge)
        XCTAssertTrue(container.running)
        XCTAssertFalse(container.isRunningOnDefaultBridge)

        object["NetworkSettings"] = NSNull()
        let bare = try DockerContainer(inspectJSON: Fixture.data(object))
        XCTAssertNil(bare.bridge)
        // With no actual bindings, the requested ones stand in.
        XCTAssertEqual(
            bare.publishedPorts,
            [
                PublishedPort(hostPort: 8080, containerPort: 80, proto: .tcp),
                PublishedPort(hostPort: 5353, containerPort: 5353, proto: .udp),
            ])
    }

    func testNullBridgeEndpointAndEmptyAddress() throws {
        var object = try Fixture.object("inspect_cb.json")
        Fixture.set(&object, "NetworkSettings.Networks.bridge", NSNull())
        XCTAssertNil(try DockerContainer(inspectJSON: Fixture.data(object)).bridge)
        // A stopped container keeps its endpoint with empty strings.
        Fixture.set(&object, "NetworkSettings.Networks.bridge", ["IPAddress": "", "MacAddress": "", "Gateway": ""])
        XCTAssertNil(try DockerContainer(inspectJSON: Fixture.data(object)).bridge)
    }

    func testNullExposedPortsLinksAndPorts() throws {
        var object = try Fixture.object("inspect_cc.json")
        Fixture.set(&object, "Config.ExposedPorts", NSNull())
        Fixture.set(&object, "HostConfig.Links", NSNull())
        Fixture.set(&object, "HostConfig.PortBindings", NSNull())
        Fixture.set(&object, "NetworkSettings.Ports", NSNull())
        let container = try DockerContainer(inspectJSON: Fixture.data(object))
        XCTAssertEqual(container.exposedPorts, [])
        XCTAssertEqual(container.links, [])
        XCTAssertEqual(container.publishedPorts, [])
        XCTAssertEqual(container.warnings, [])
    }

    func testStoppedContainer() throws {
        var object = try Fixture.object("inspect_cb.json")
        object["State"] = ["Status": "exited", "Running": false, "Pid": 0, "ExitCode": 137]
        Fixture.set(&object, "NetworkSettings.Networks.bridge.IPAddress", "")
        Fixture.set(&object, "NetworkSettings.Ports", [String: Any]())
        let container = try DockerContainer(inspectJSON: Fixture.data(object))
        XCTAssertFalse(container.running)
        XCTAssertNil(container.pid)
        XCTAssertNil(container.bridge)
        XCTAssertFalse(container.isRunningOnDefaultBridge)
    }

    func testPortVariants() throws {
        var object = try Fixture.object("inspect_cb.json")
        Fixture.set(
            &object, "Config.ExposedPorts",
            [
                "80/tcp": [String: Any](), "53/udp": [String: Any](), "7000-7002/tcp": [String: Any](),
                "9/sctp": [String: Any](), "bogus": [String: Any](), "70000/tcp": [String: Any](),
            ])
        Fixture.set(
            &object, "NetworkSettings.Ports",
            [
                "80/tcp": [
                    ["HostIp": "127.0.0.1", "HostPort": "8080"], ["HostIp": "::", "HostPort": "8080"],
                    ["HostIp": "0.0.0.0", "HostPort": "8081"], ["HostIp": "", "HostPort": "8082"],
                ],
                "53/udp": NSNull(),
                "9/sctp": [["HostIp": "::1", "HostPort": "9"]],
                "81/tcp": [["HostIp": "not-an-ip", "HostPort": "1"], ["HostIp": "0.0.0.0", "HostPort": "x"]],
            ])
        let container = try DockerContainer(inspectJSON: Fixture.data(object))
        XCTAssertEqual(
            container.exposedPorts,
            [
                PortSpec(80, .tcp), PortSpec(7000, .tcp), PortSpec(7001, .tcp), PortSpec(7002, .tcp),
                PortSpec(53, .udp), PortSpec(9, .sctp),
            ])
        XCTAssertEqual(
            container.publishedPorts,
            [
                PublishedPort(hostIP: IPv4Address(127, 0, 0, 1), hostPort: 8080, containerPort: 80, proto: .tcp),
                PublishedPort(hostIP: nil, hostPort: 8081, containerPort: 80, proto: .tcp),
                PublishedPort(hostIP: nil, hostPort: 8082, containerPort: 80, proto: .tcp),
            ])
        XCTAssertEqual(container.warnings.count, 4, "\(container.warnings)")
        XCTAssertTrue(container.warnings.contains { $0.contains("'bogus'") })
        XCTAssertTrue(container.warnings.contains { $0.contains("'70000/tcp'") })
        XCTAssertTrue(container.warnings.contains { $0.contains("not-an-ip") })
        XCTAssertTrue(container.warnings.contains { $0.contains("HostPort 'x'") })
    }

    func testEphemeralRequestedBindingsAreSkipped() throws {
        var object = try Fixture.object("inspect_cb.json")
        Fixture.set(&object, "NetworkSettings.Ports", NSNull())
        Fixture.set(&object, "HostConfig.PortBindings", ["80/tcp": [["HostIp": "", "HostPort": ""]]])
        XCTAssertEqual(try DockerContainer(inspectJSON: Fixture.data(object)).publishedPorts, [])
    }

    func testBadLinkEntriesBecomeWarnings() throws {
        var object = try Fixture.object("inspect_cc.json")
        Fixture.set(&object, "HostConfig.Links", ["/cb:/cc/b", "garbage", "/db:/other/x"])
        let container = try DockerContainer(inspectJSON: Fixture.data(object))
        XCTAssertEqual(
            container.links,
            [
                DockerLinkDeclaration(child: "cb", parent: "cc", alias: "b"),
                DockerLinkDeclaration(child: "db", parent: "other", alias: "x"),
            ])
        XCTAssertEqual(container.warnings.count, 2, "\(container.warnings)")
    }

    func testNameWithoutSlashAndMissingState() throws {
        var object = try Fixture.object("inspect_cc.json")
        object["Name"] = "plain"
        object["State"] = nil
        Fixture.set(&object, "HostConfig.Links", NSNull())
        let container = try DockerContainer(inspectJSON: Fixture.data(object))
        XCTAssertEqual(container.name, "plain")
        XCTAssertFalse(container.running)
        XCTAssertEqual(container.warnings, ["no State: taken as not running"])
    }

    // MARK: Failures name the field

    func testBadAddressNamesTheField() throws {
        var object = try Fixture.object("inspect_cb.json")
        Fixture.set(&object, "NetworkSettings.Networks.bridge.IPAddress", "172.17.0.300")
        assertDecodingError(
            try DockerContainer(inspectJSON: Fixture.data(object)),
            field: "NetworkSettings.Networks.bridge.IPAddress", reasonContains: "172.17.0.300")
        Fixture.set(&object, "NetworkSettings.Networks.bridge.IPAddress", "172.17.0.3")
        Fixture.set(&object, "NetworkSettings.Networks.bridge.MacAddress", "02:42:zz:11:00:03")
        assertDecodingError(
            try DockerContainer(inspectJSON: Fixture.data(object)),
            field: "NetworkSettings.Networks.bridge.MacAddress", reasonContains: "not a MAC")
    }

    func testWrongTypeNamesTheField() throws {
        var object = try Fixture.object("inspect_cb.json")
        Fixture.set(&object, "State.Pid", "10701")
        assertDecodingError(
            try DockerContainer(inspectJSON: Fixture.data(object)),
            field: "State.Pid", reasonContains: "number")
        object = try Fixture.object("inspect_cb.json")
        Fixture.set(&object, "HostConfig.Links", "/cb:/cc/b")
        assertDecodingError(
            try DockerContainer(inspectJSON: Fixture.data(object)),
            field: "HostConfig.Links", reasonContains: "array")
        object = try Fixture.object("inspect_cb.json")
        Fixture.set(&object, "NetworkSettings.Ports", ["80/tcp": [["HostIp": 0, "HostPort": "8080"]]])
        assertDecodingError(
            try DockerContainer(inspectJSON: Fixture.data(object)),
            field: "NetworkSettings.Ports.80/tcp[0].HostIp", reasonContains: "string")
    }

    func testMissingIdAndNotJSON() throws {
        var object = try Fixture.object("inspect_cb.json")
        object["Id"] = nil
        assertDecodingError(
            try DockerContainer(inspectJSON: Fixture.data(object)), field: "Id", reasonContains: "missing")
        assertDecodingError(
            try DockerContainer(inspectJSON: Data("<html>502</html>".utf8)), field: "", reasonContains: "JSON")
        assertDecodingError(try DockerContainer(inspectJSON: Data("[]".utf8)), field: "", reasonContains: "object")
        assertDecodingError(try DockerContainer(inspectJSON: Data()), field: "", reasonContains: "")
    }

    func testListAndNetworkFailuresNameTheField() throws {
        let list =
            #"[{"Id":"a","Names":["/a"]},{"Id":"b","Names":["/b"],"NetworkSettings":{"Networks":{"bridge":{"IPAddress":"x"}}}}]"#
        assertDecodingError(
            try DockerContainerSummary.list(fromJSON: Data(list.utf8)),
            field: "[1].NetworkSettings.Networks.bridge.IPAddress", reasonContains: "'x'")
        assertDecodingError(
            try DockerContainerSummary.list(fromJSON: Data(#"[{"Names":["/a"]}]"#.utf8)),
            field: "[0].Id", reasonContains: "missing")
        let network = #"{"Id":"n","IPAM":{"Config":[{"Subnet":"172.17.0.0/40"}]}}"#
        assertDecodingError(
            try DockerBridgeNetwork(json: Data(network.utf8)),
            field: "IPAM.Config[0].Subnet", reasonContains: "/40")
    }

    func testErrorDescriptions() {
        let error = DockerError.decoding(what: "container inspect", field: "State.Pid", reason: "expected a number")
        XCTAssertEqual(error.description, "docker: cannot decode container inspect: field State.Pid: expected a number")
        XCTAssertEqual(
            DockerError.httpStatus(
                request: "GET /v1.41/containers/x/json", status: 404,
                message: "No such container: x"
            ).description,
            "docker: GET /v1.41/containers/x/json: HTTP 404: No such container: x")
        XCTAssertTrue(DockerError.httpStatus(request: "", status: 404, message: "").isNotFound)
        XCTAssertFalse(DockerError.httpStatus(request: "", status: 500, message: "").isNotFound)
        XCTAssertEqual(
            DockerError.daemonUnreachable(host: "unix:///x.sock", reason: "No such file or directory").description,
            "docker daemon not reachable at unix:///x.sock: No such file or directory — is dockerd running? use --docker-host"
        )
    }
}

func assertDecodingError<T>(
    _ expression: @autoclosure () throws -> T, field: String, reasonContains: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    do {
        let value = try expression()
        XCTFail("expected a decoding error at \(field), got \(value)", file: file, line: line)
    } catch let DockerError.decoding(_, actualField, reason) {
        XCTAssertEqual(actualField, field, "reason: \(reason)", file: file, line: line)
        if !reasonContains.isEmpty {
            XCTAssertTrue(
                reason.contains(reasonContains), "'\(reason)' lacks '\(reasonContains)'", file: file, line: line)
        }
    } catch {
        XCTFail("expected DockerError.decoding, got \(error)", file: file, line: line)
    }
}
