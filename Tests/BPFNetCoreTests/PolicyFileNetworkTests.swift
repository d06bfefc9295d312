// SPDX-License-Identifier: Apache-2.0
//
// The policy file's `networks:` list and `containers[].network`.

import XCTest

@testable import BPFNetCore

final class PolicyFileNetworkTests: XCTestCase {
    let networks = """
        networks:
          - {name: shop, bridge: br-shop, icc: false, hostIPv4: 192.0.2.10}
          - {name: vault, bridge: br-vault, internal: true, masquerade: false}

        """

    func testNetworksAndTheirContainers() throws {
        let policy = try PolicyFile.load(
            yaml: networks + """
                containers:
                  - {name: cart, network: shop, ip: 10.90.0.2, mac: 02:42:0a:5a:00:02, port: vethcart}
                  - {name: cart, network: bridge, ip: 172.17.0.2, mac: 02:42:ac:11:00:02, port: vethcart0}
                """, file: "n.yaml")
        XCTAssertEqual(
            policy.networks,
            [
                BridgeNetwork(name: "shop", bridge: "br-shop", icc: false, hostIPv4: IPv4Address(192, 0, 2, 10)),
                BridgeNetwork(name: "vault", bridge: "br-vault", internal: true, masquerade: false),
            ])
        XCTAssertEqual(policy.containers.map(\.network), ["shop", nil], "bridge is the default bridge")
        XCTAssertEqual(policy.bridges, ["docker0", "br-shop", "br-vault"])
    }

    func testHostBindingIPv4IsStillReadAsHostIPv4() throws {
        let policy = try PolicyFile.load(
            yaml: "networks:\n  - {name: shop, bridge: br-shop, hostBindingIPv4: 192.0.2.10}\n", file: "old.yaml")
        XCTAssertEqual(policy.networks.first?.hostIPv4, IPv4Address(192, 0, 2, 10), "the key's first documented name")
        XCTAssertThrowsError(
            try PolicyFile.load(
                yaml:
                    "networks:\n  - {name: shop, bridge: br-shop, hostIPv4: 192.0.2.10, hostBindingIPv4: 192.0.2.11}\n",
                file: "both.yaml")
        ) { error in
            XCTAssertTrue(
                "\(error)".contains("networks[0].hostBindingIPv4: hostBindingIPv4 is the old name"), "\(error)")
        }
        XCTAssertThrowsError(
            try PolicyFile.load(
                yaml: "networks:\n  - {name: shop, bridge: br-shop, hostIP: 192.0.2.10}\n", file: "t.yaml")
        ) { error in
            XCTAssertTrue("\(error)".contains("did you mean 'hostIPv4'"), "\(error)")
            XCTAssertFalse("\(error)".contains("hostBindingIPv4"), "the old name is not offered: \(error)")
        }
    }

    func testMistakesAreNamed() {
        let cases: [(String, String)] = [
            (
                "containers:\n  - {name: a, network: nope, ip: 10.0.0.2, mac: 02:00:00:00:00:02, port: va}\n",
                "no network is named 'nope'"
            ),
            ("networks:\n  - {name: bridge, bridge: br-x}\n", "is Docker's own network"),
            ("networks:\n  - {name: a, bridge: docker0}\n", "is already the bridge of the default network"),
            ("networks:\n  - {name: a, bridge: br-a}\n  - {name: a, bridge: br-b}\n", "list each network once"),
            (
                networks
                    + "containers:\n  - {name: a, network: shop, ip: 10.90.0.2, mac: 02:00:00:00:00:02, port: va}\n"
                    + "  - {name: b, ip: 172.17.0.3, mac: 02:00:00:00:00:03, port: vb}\n"
                    + "links:\n  - {parent: b, child: a}\n",
                "links join containers of the default bridge only"
            ),
        ]
        for (yaml, expected) in cases {
            XCTAssertThrowsError(try PolicyFile.load(yaml: yaml, file: "n.yaml")) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
    }

    func testSettingsFilesCannotListNetworks() {
        XCTAssertThrowsError(try PolicyFile.load(yaml: networks, file: "s.yaml", kind: .settingsOnly)) { error in
            XCTAssertTrue("\(error)".contains("networks: not allowed in this file"), "\(error)")
        }
    }
}
