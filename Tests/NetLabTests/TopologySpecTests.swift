// SPDX-License-Identifier: Apache-2.0

import BPFNetCore
import XCTest

@testable import NetLab

final class TopologySpecTests: XCTestCase {
    func testDockerLikeSpecIsValid() throws {
        let spec = TopologySpec.dockerLike(containers: ["web", "db", "client"])
        try spec.validate()
        XCTAssertEqual(spec.roles, ["host", "web", "db", "client", "ext"])
        XCTAssertEqual(spec.containers[0].address, IPv4Address(10, 88, 0, 2))
        XCTAssertEqual(spec.containers[0].resolvedHostInterface, "vethweb")
        XCTAssertEqual(spec.containers[0].resolvedMAC, MACAddress("02:42:0a:58:00:02"))
        XCTAssertEqual(spec.bridge.address.description, "10.88.0.1/16")
    }

    func testRejectsWhatWouldFailOrCollide() {
        func rejects(_ change: (inout TopologySpec) -> Void, _ fragment: String, line: UInt = #line) {
            var spec = TopologySpec.dockerLike(containers: ["web", "db"])
            change(&spec)
            XCTAssertThrowsError(try spec.validate(), line: line) { error in
                XCTAssert("\(error)".contains(fragment), "\(error) should mention \(fragment)", line: line)
            }
        }
        rejects({ $0.containers[1].name = "web" }, "used twice")
        rejects({ $0.containers[1].name = "host" }, "used twice")
        rejects({ $0.containers[0].name = "Web!" }, "lowercase")
        rejects({ $0.containers[0].name = "-web" }, "lowercase")
        rejects({ $0.containers[0].hostInterface = "averyveryverylongname" }, "1-15 characters")
        rejects({ $0.containers[1].hostInterface = "vethweb" }, "used twice")
        rejects({ $0.containers[0].address = IPv4Address(10, 99, 0, 2) }, "outside the bridge subnet")
        rejects({ $0.containers[1].address = IPv4Address(10, 88, 0, 2) }, "already used")
        rejects({ $0.externals[0].addresses[0] = IPv4InterfaceAddress("192.0.2.7/24")! }, "uplink")
        rejects({ $0.externals[0].addresses[0] = IPv4InterfaceAddress("203.0.113.9/24")! }, "link subnet")
        rejects({ $0.externals[0].addresses = [] }, "at least one address")
    }

    func testEndpointParsing() {
        // Interface addresses ("10.0.0.1/24") are BPFNetCore's IPv4InterfaceAddress (ValidationTests).
        XCTAssertEqual(IPv4Endpoint("10.0.0.1:80"), IPv4Endpoint(IPv4Address(10, 0, 0, 1), 80))
    }
}
