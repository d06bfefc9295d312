// SPDX-License-Identifier: Apache-2.0

import XCTest

@testable import DockerWatcher

final class DockerHostTests: XCTestCase {
    func testAcceptedForms() throws {
        XCTAssertEqual(try DockerHost(parsing: "unix:///var/run/docker.sock"), .default)
        XCTAssertEqual(try DockerHost(parsing: "unix:///tmp/x/d.sock"), .unixSocket(path: "/tmp/x/d.sock"))
        XCTAssertEqual(try DockerHost(parsing: "UNIX:///a"), .unixSocket(path: "/a"))
        XCTAssertEqual(try DockerHost(parsing: "tcp://127.0.0.1:2375"), .tcp(host: "127.0.0.1", port: 2375))
        XCTAssertEqual(try DockerHost(parsing: "tcp://docker.example"), .tcp(host: "docker.example", port: 2375))
        XCTAssertEqual(try DockerHost(parsing: "tcp://[::1]:2376/"), .tcp(host: "::1", port: 2376))
        XCTAssertEqual(DockerHost.default.description, "unix:///var/run/docker.sock")
        XCTAssertEqual(DockerHost.tcp(host: "::1", port: 1).description, "tcp://[::1]:1")
    }

    func testRejectedFormsSayWhatIsAccepted() {
        let cases: [(String, String)] = [
            ("/var/run/docker.sock", "did you mean unix:///var/run/docker.sock?"),
            ("ssh://me@host", "unsupported scheme 'ssh'"),
            ("npipe:////./pipe/docker_engine", "unsupported scheme 'npipe'"),
            ("unix://", "no socket path"),
            ("unix://relative.sock", "must be absolute"),
            ("tcp://", "expected tcp://HOST:PORT"),
            ("tcp://host:99999", "bad port"),
            ("tcp://:2375", "no host name"),
            ("docker.sock", "missing scheme"),
        ]
        for (value, reason) in cases {
            XCTAssertThrowsError(try DockerHost(parsing: value), value) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix("docker host '\(value)': "), text)
                XCTAssertTrue(text.contains(reason), text)
                XCTAssertTrue(text.contains("expected unix:///path/to/docker.sock"), text)
            }
        }
    }

    func testVersionNegotiation() {
        XCTAssertEqual(DockerAPIVersion("1.41"), DockerAPIVersion(1, 41))
        XCTAssertNil(DockerAPIVersion("1.41.0"))
        XCTAssertNil(DockerAPIVersion("v1.41"))
        XCTAssertNil(DockerAPIVersion(""))
        XCTAssertEqual(DockerAPIVersion.negotiated(daemon: DockerAPIVersion(1, 41)), DockerAPIVersion(1, 41))
        XCTAssertEqual(DockerAPIVersion.negotiated(daemon: DockerAPIVersion(1, 52)), DockerAPIVersion(1, 52))
        XCTAssertEqual(DockerAPIVersion.negotiated(daemon: DockerAPIVersion(1, 60)), DockerAPIVersion(1, 55))
        XCTAssertEqual(DockerAPIVersion.negotiated(daemon: DockerAPIVersion(2, 0)), DockerAPIVersion(1, 55))
        XCTAssertEqual(DockerAPIVersion.negotiated(daemon: nil), DockerAPIVersion(1, 41))
        XCTAssertTrue(DockerAPIVersion(1, 9) < DockerAPIVersion(1, 41))
    }

    func testQueryEncoding() {
        XCTAssertEqual(
            queryString([("filters", #"{"a":["b c"]}"#), ("since", "1.5")]),
            "?filters=%7B%22a%22%3A%5B%22b%20c%22%5D%7D&since=1.5")
        XCTAssertEqual(dockerTimestamp(Date(timeIntervalSince1970: 1_700_000_000.25)), "1700000000.250000000")
        XCTAssertEqual(dockerTimestamp(Date(timeIntervalSince1970: 12)), "12.000000000")
    }
}
