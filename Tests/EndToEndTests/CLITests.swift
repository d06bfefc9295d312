// SPDX-License-Identifier: Apache-2.0
//
// The command line as an operator meets it: exit codes (0 ok, 1 runtime, 2
// usage or bad input), errors that name the offending value, and load /
// unload being repeatable and crash-safe. Runs the real binary.

import BPFNetCore
import DemoHost
import Foundation
import LinuxNet
import NetLab
import XCTest

final class CLITests: XCTestCase {
    private var workDirectory = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/bpfnet-cli-XXXXXX".utf8CString)
        workDirectory = String(cString: try XCTUnwrap(mkdtemp(&template)))
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: workDirectory)
    }

    private func write(_ text: String, to name: String) throws -> String {
        let path = workDirectory + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs bpfnet (optionally inside `namespace`) and returns (exit status, stdout, stderr).
    private func bpfnet(
        _ arguments: [String],
        in namespace: NetworkNamespace? = nil
    ) throws -> (Int32, String, String) {
        let argv = [try DemoLab.locateBPFNet()] + arguments
        let result = try ProcessRunner.run(Command(namespace.map { $0.nsenter(argv) } ?? argv, timeout: .seconds(60)))
        guard case .exited(let status) = result.status else {
            XCTFail("bpfnet \(arguments) ended by \(result.status)")
            return (-1, result.stdout, result.stderr)
        }
        return (status, result.stdout, result.stderr)
    }

    // MARK: no root needed

    func testMissingConfigFileIsBadInput() throws {
        let (status, _, stderr) = try bpfnet(["load", "--config", workDirectory + "/nope.yaml"])
        XCTAssertEqual(status, 2)
        XCTAssertTrue(stderr.contains("nope.yaml"), stderr)
    }

    func testBadCIDRNamesFileKeyAndValue() throws {
        let file = try write(
            """
            bridge: docker0
            extInterfaces:
              - name: eth0
                allowSources: [198.51.100.0/33]
            """, to: "bad.yaml")
        let (status, _, stderr) = try bpfnet(["load", "--config", file])
        XCTAssertEqual(status, 2)
        XCTAssertTrue(stderr.contains("bad.yaml"), stderr)
        XCTAssertTrue(stderr.contains("extInterfaces[0].allowSources[0]"), stderr)
        XCTAssertTrue(stderr.contains("198.51.100.0/33"), stderr)
    }

    func testUnknownKeyIsRejected() throws {
        let file = try write(
            "bridge: docker0\nicc: false\nforwardPolicy: drop\nallowSource: [10.0.0.0/8]\n", to: "typo.yaml")
        let (status, _, stderr) = try bpfnet(["load", "--config", file])
        XCTAssertEqual(status, 2)
        XCTAssertTrue(stderr.contains("allowSource"), stderr)
    }

    func testUsageErrorsExitTwo() throws {
        XCTAssertEqual(try bpfnet(["load"]).0, 2, "missing --config")
        XCTAssertEqual(try bpfnet(["status", "--icc", "maybe"]).0, 2, "unknown option")
        let file = try write("bridge: docker0\n", to: "ok.yaml")
        let (status, _, stderr) = try bpfnet(["load", "--config", file, "--allow-source", "10.0.0.300/8"])
        XCTAssertEqual(status, 2)
        XCTAssertTrue(stderr.contains("10.0.0.300/8"), stderr)
        XCTAssertEqual(try bpfnet(["load", "--config", file, "--forward-policy", "maybe"]).0, 2)
        XCTAssertEqual(try bpfnet(["nonsense"]).0, 2)
    }

    func testNotRootSaysSo() throws {
        guard geteuid() == 0 else { throw XCTSkip("checked as root by dropping to nobody") }
        let file = try write("bridge: docker0\n", to: "ok.yaml")
        try ProcessRunner.runChecked(Command(["chmod", "755", workDirectory]))
        let binary = try DemoLab.locateBPFNet()
        let result = try ProcessRunner.run(
            Command(
                [
                    "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                    binary, "load", "--config", file,
                ], timeout: .seconds(30)))
        XCTAssertEqual(result.status, .exited(1))
        XCTAssertTrue(result.stderr.contains("must run as root"), result.stderr)
    }

    // MARK: root, in a namespace of the test's own

    private func withHost(_ body: (Topology) throws -> Void) throws {
        try requireRoot("loading bpfnet in a network namespace")
        let spec = TopologySpec(
            bridge: BridgeSpec(address: IPv4InterfaceAddress("10.89.0.1/24")!),
            containers: [ContainerSpec(name: "web", address: IPv4Address(10, 89, 0, 2))])
        let topology = try Topology.build(spec)
        defer {
            _ = try? bpfnet(["unload", "--pin-path", workDirectory + "/pins"], in: topology.host)
            _ = try? ProcessRunner.run(Command(["umount", "-l", workDirectory + "/pins"]))
            _ = topology.teardown()
        }
        try body(topology)
    }

    private var policyYAML: String {
        """
        bridge: docker0
        icc: false
        containers:
          - {name: web, ip: 10.89.0.2, mac: "02:42:0a:59:00:02", port: vethweb, exposed: [80/tcp]}
        """
    }

    func testMissingBridgeIsBadInputAndTouchesNothing() throws {
        try requireRoot("loading bpfnet in a network namespace")
        let topology = try Topology.build(
            TopologySpec(
                bridge: BridgeSpec(name: "br-other", address: IPv4InterfaceAddress("10.89.1.1/24")!)))
        defer { _ = topology.teardown() }
        let file = try write(policyYAML, to: "policy.yaml")
        let pins = workDirectory + "/pins"
        let (status, _, stderr) = try bpfnet(["load", "--config", file, "--pin-path", pins], in: topology.host)
        XCTAssertEqual(status, 2, stderr)
        XCTAssertTrue(stderr.contains("docker0") && stderr.contains("no such interface"), stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: pins + "/bn_config"), "pins were created")
        let tables = try topology.run(in: "host", ["nft", "list", "tables"]).stdout
        XCTAssertFalse(tables.contains("bpfnet"), tables)
    }

    func testPortThatIsNotABridgePortIsRejected() throws {
        try withHost { topology in
            let file = try write(
                policyYAML.replacingOccurrences(of: "port: vethweb", with: "port: lo"), to: "policy.yaml")
            let (status, _, stderr) = try bpfnet(
                ["load", "--config", file, "--pin-path", workDirectory + "/pins"],
                in: topology.host)
            XCTAssertEqual(status, 2, stderr)
            XCTAssertTrue(stderr.contains("lo") && stderr.contains("not a bridge port"), stderr)
        }
    }

    func testMissingInterfaceIsNamed() throws {
        try withHost { topology in
            let file = try write(policyYAML + "\nextInterfaces: [{name: nosuch0}]\n", to: "policy.yaml")
            let (status, _, stderr) = try bpfnet(
                ["load", "--config", file, "--pin-path", workDirectory + "/pins"],
                in: topology.host)
            XCTAssertEqual(status, 2, stderr)
            XCTAssertTrue(stderr.contains("nosuch0"), stderr)
        }
    }

    func testLoadTwiceUnloadTwiceAndStatus() throws {
        try withHost { topology in
            let file = try write(policyYAML, to: "policy.yaml")
            let pins = ["--pin-path", workDirectory + "/pins"]
            let (notLoaded, _, notLoadedError) = try bpfnet(["status"] + pins, in: topology.host)
            XCTAssertEqual(notLoaded, 1)
            XCTAssertTrue(notLoadedError.contains("nothing is loaded"), notLoadedError)

            XCTAssertEqual(try bpfnet(["load", "--config", file] + pins, in: topology.host).0, 0)
            let first = try bpfnet(["status", "--json"] + pins, in: topology.host)
            XCTAssertEqual(try bpfnet(["load", "--config", file] + pins, in: topology.host).0, 0)
            let second = try bpfnet(["status", "--json"] + pins, in: topology.host)
            XCTAssertEqual(first.0, 0)
            let decoder = JSONDecoder()
            let before = try decoder.decode(DataplaneStatus.self, from: Data(first.1.utf8))
            let after = try decoder.decode(DataplaneStatus.self, from: Data(second.1.utf8))
            XCTAssertEqual(before.containers, after.containers)
            XCTAssertEqual(before.generation, after.generation, "an identical reload changed the maps")
            let filters = try topology.run(in: "host", ["tc", "filter", "show", "dev", "vethweb", "ingress"]).stdout
            XCTAssertEqual(
                filters.split(separator: "\n").filter { $0.contains("direct-action") }.count, 1,
                "exactly one port program on vethweb: \(filters)")
            XCTAssertEqual(try clsact(topology), ["clsact vethweb"], "load creates the clsact qdisc it needs")

            XCTAssertEqual(try bpfnet(["unload"] + pins, in: topology.host).0, 0)
            XCTAssertEqual(try bpfnet(["unload"] + pins, in: topology.host).0, 0, "unload of nothing must succeed")
            let afterUnload = try topology.run(in: "host", ["tc", "filter", "show", "dev", "vethweb", "ingress"]).stdout
            XCTAssertFalse(afterUnload.contains("bpfnet"), afterUnload)
            XCTAssertFalse(try topology.run(in: "host", ["nft", "list", "tables"]).stdout.contains("bpfnet"))
            XCTAssertEqual(try clsact(topology), [], "unload leaves no clsact qdisc where there was none")
        }
    }

    /// `status` lists every port of the bridge with its container and the
    /// hook its program is on. A port added by hand after `load` shows without
    /// the program (the guard holds it) until the next `load` attaches to it
    /// as an unknown port.
    func testStatusListsEveryBridgePortAndThoseWithoutTheProgram() throws {
        try withHost { topology in
            let file = try write(policyYAML, to: "policy.yaml")
            let pins = ["--pin-path", workDirectory + "/pins"]
            func ports() throws -> [String: DataplaneStatus.BridgePort] {
                let (status, out, err) = try bpfnet(["status", "--json"] + pins, in: topology.host)
                XCTAssertEqual(status, 0, err)
                let list = try XCTUnwrap(JSONDecoder().decode(DataplaneStatus.self, from: Data(out.utf8)).bridgePorts)
                return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
            }
            XCTAssertEqual(try bpfnet(["load", "--config", file] + pins, in: topology.host).0, 0)
            let loaded = try ports()
            XCTAssertEqual(Set(loaded.keys), ["vethweb"])
            XCTAssertEqual(loaded["vethweb"]?.container, "web")
            XCTAssertEqual(loaded["vethweb"]?.hook, "tc")

            try topology.ip(
                in: "host",
                ["link add vethrogue type veth peer name rogue0", "link set vethrogue master docker0 up"])
            let held = try ports()
            XCTAssertEqual(Set(held.keys), ["vethweb", "vethrogue"])
            XCTAssertNil(held["vethrogue"]?.hook, "no program before the next load")
            XCTAssertNil(held["vethrogue"]?.container)
            let text = try bpfnet(["status"] + pins, in: topology.host).1
            XCTAssertTrue(text.contains("bridge ports (2: 1 known, 1 unknown, 1 without the port program)"), text)
            XCTAssertTrue(text.contains("! vethrogue: no program yet"), text)

            XCTAssertEqual(try bpfnet(["load", "--config", file] + pins, in: topology.host).0, 0)
            let reloaded = try ports()
            XCTAssertEqual(reloaded["vethrogue"]?.hook, "tc", "load attaches to every port")
            XCTAssertNil(reloaded["vethrogue"]?.container, "an unknown port")
            XCTAssertEqual(reloaded["vethweb"]?.hook, "tc")
        }
    }

    /// `status` names the XDP mode of each external interface and warns when
    /// the driver has no native XDP (a macvlan here; a veth has it).
    func testStatusWarnsAboutAnExtInterfaceInGenericXDPMode() throws {
        try withHost { topology in
            try topology.ip(
                in: "host",
                [
                    "link add vup0 type veth peer name vup1", "link set vup0 up",
                    "link add mac0 link vup0 type macvlan mode bridge", "link set mac0 up",
                ])
            defer { try? topology.ip(in: "host", ["link del vup0"]) }
            let file = try write(policyYAML + "\nextInterfaces: [mac0, vup0]\n", to: "policy.yaml")
            let pins = ["--pin-path", workDirectory + "/pins"]
            let (loaded, _, loadErr) = try bpfnet(["load", "--config", file] + pins, in: topology.host)
            XCTAssertEqual(loaded, 0, loadErr)
            XCTAssertTrue(loadErr.contains("mac0 in generic XDP mode"), loadErr)

            let (status, out, err) = try bpfnet(["status", "--json"] + pins, in: topology.host)
            XCTAssertEqual(status, 0, err)
            let ext = try JSONDecoder().decode(DataplaneStatus.self, from: Data(out.utf8)).extInterfaces
            XCTAssertEqual(
                Dictionary(uniqueKeysWithValues: ext.map { ($0.name, $0.xdpMode) }),
                ["mac0": "generic", "vup0": "native"])
            let text = try bpfnet(["status"] + pins, in: topology.host).1
            XCTAssertTrue(text.contains("WARNING: mac0: the driver has no native XDP"), text)
            XCTAssertFalse(text.contains("WARNING: vup0"), text)
            let metrics = try bpfnet(["status", "--prometheus"] + pins, in: topology.host).1
            XCTAssertTrue(metrics.contains("\nbpfnet_external_interfaces_generic_xdp 1.0\n"), metrics)
        }
    }

    /// `load --watch` attaches to a port the moment it joins, holds the pin
    /// path against another `load` meanwhile, and leaves the dataplane loaded
    /// when SIGTERM ends it.
    func testLoadWatchAttachesToAPortTheMomentItJoins() throws {
        try withHost { topology in
            let file = try write(policyYAML, to: "policy.yaml")
            let pins = ["--pin-path", workDirectory + "/pins"]
            let watcher = try topology.startProcess(
                in: "host", [try DemoLab.locateBPFNet(), "load", "--watch", "--config", file] + pins,
                captureOutput: true)
            _ = try watcher.waitForLine(prefix: "bpfnet: watching docker0", timeout: .seconds(60))

            let (refused, _, stderr) = try bpfnet(["load", "--config", file] + pins, in: topology.host)
            XCTAssertEqual(refused, 1, stderr)
            XCTAssertTrue(stderr.contains("`bpfnet load --watch` (pid \(watcher.pid))"), stderr)

            try topology.ip(
                in: "host", ["link add vethlate type veth peer name late0", "link set vethlate master docker0 up"])
            let deadline = ContinuousClock.now + .seconds(10)
            var hook: String?
            while hook == nil, ContinuousClock.now < deadline {
                let (status, out, _) = try bpfnet(["status", "--json"] + pins, in: topology.host)
                XCTAssertEqual(status, 0)
                let ports = try JSONDecoder().decode(DataplaneStatus.self, from: Data(out.utf8)).bridgePorts ?? []
                hook = ports.first { $0.name == "vethlate" }?.hook
                if hook == nil { usleep(100_000) }
            }
            XCTAssertEqual(hook, "tc", "the watcher attached to the port that joined, no second load")

            kill(watcher.pid, SIGTERM)
            let stopDeadline = ContinuousClock.now + .seconds(10)
            while watcher.isRunning, ContinuousClock.now < stopDeadline { usleep(50_000) }
            XCTAssertEqual(watcher.stop(), .exited(0))
            let after = try bpfnet(["status", "--json"] + pins, in: topology.host)
            XCTAssertEqual(after.0, 0, "the dataplane stays loaded: \(after.2)")
        }
    }

    /// The interfaces of the host namespace with a clsact qdisc ("clsact DEV").
    private func clsact(_ topology: Topology) throws -> Set<String> {
        try BackendObjects.clsactQdiscs(in: topology, role: "host")
    }

    /// A clsact qdisc that was there before load, with another tool's filter
    /// on it, survives load and unload with its filter; bpfnet's own filter
    /// comes and goes. Switching the port hook to XDP and back keeps it too.
    func testAClsactThatWasThereSurvivesWithItsFilter() throws {
        try withHost { topology in
            let file = try write(policyYAML, to: "policy.yaml")
            let pins = ["--pin-path", workDirectory + "/pins"]
            _ = try topology.run(in: "host", ["tc", "qdisc", "add", "dev", "vethweb", "clsact"]).check()
            // Another tool's filter, after bpfnet's priority (0xb9f), matching everything.
            _ = try topology.run(
                in: "host",
                [
                    "tc", "filter", "add", "dev", "vethweb", "ingress", "prio", "40000", "protocol", "all",
                    "u32", "match", "u32", "0", "0", "classid", "1:1",
                ])
            func ingress() throws -> String {
                try topology.run(in: "host", ["tc", "filter", "show", "dev", "vethweb", "ingress"]).stdout
            }

            for hook in ["tc", "xdp", "tc"] {
                let (status, _, stderr) = try bpfnet(
                    ["load", "--config", file, "--port-hook", hook] + pins, in: topology.host)
                XCTAssertEqual(status, 0, "\(hook): \(stderr)")
                let filters = try ingress()
                XCTAssertEqual(filters.contains("bpfnet_port_tc"), hook == "tc", "\(hook): \(filters)")
                XCTAssertTrue(filters.contains("u32"), "\(hook): the other tool's filter is gone: \(filters)")
                XCTAssertEqual(try clsact(topology), ["clsact vethweb"], hook)
            }

            let (status, _, stderr) = try bpfnet(["unload"] + pins, in: topology.host)
            XCTAssertEqual(status, 0, stderr)
            XCTAssertEqual(try clsact(topology), ["clsact vethweb"], "unload removed a qdisc bpfnet did not create")
            let filters = try ingress()
            XCTAssertTrue(filters.contains("u32"), "unload took the other tool's filter: \(filters)")
            XCTAssertFalse(filters.contains("bpfnet"), filters)
        }
    }

    /// A clsact qdisc bpfnet created goes when its program goes: when the port
    /// hook switches to XDP, and at unload. One another tool has put a filter
    /// on since stays, with that filter.
    func testAClsactBPFNetCreatedGoesWithItsProgram() throws {
        try withHost { topology in
            let file = try write(policyYAML, to: "policy.yaml")
            let pins = ["--pin-path", workDirectory + "/pins"]
            XCTAssertEqual(try bpfnet(["load", "--config", file] + pins, in: topology.host).0, 0)
            XCTAssertEqual(try clsact(topology), ["clsact vethweb"])
            XCTAssertEqual(try bpfnet(["load", "--config", file, "--port-hook", "xdp"] + pins, in: topology.host).0, 0)
            XCTAssertEqual(try clsact(topology), [], "the tc hook is no longer used: its clsact qdisc goes")

            XCTAssertEqual(try bpfnet(["load", "--config", file] + pins, in: topology.host).0, 0)
            _ = try topology.run(
                in: "host",
                [
                    "tc", "filter", "add", "dev", "vethweb", "egress", "prio", "7", "protocol", "all",
                    "u32", "match", "u32", "0", "0", "classid", "1:1",
                ])
            XCTAssertEqual(try bpfnet(["unload"] + pins, in: topology.host).0, 0)
            XCTAssertEqual(try clsact(topology), ["clsact vethweb"], "removing it would take the egress filter")
            let egress = try topology.run(in: "host", ["tc", "filter", "show", "dev", "vethweb", "egress"]).stdout
            XCTAssertTrue(egress.contains("u32"), egress)
        }
    }

    /// Someone detaches bpfnet's programs behind its back: the next `load`
    /// (a new process, which asks the kernel rather than its records) puts
    /// them back, for the tc and the XDP port hook alike.
    func testLoadReattachesProgramsSomeoneDetached() throws {
        try withHost { topology in
            let file = try write(policyYAML, to: "policy.yaml")
            let pins = ["--pin-path", workDirectory + "/pins"]
            for hook in ["tc", "xdp"] {
                XCTAssertEqual(
                    try bpfnet(["load", "--config", file, "--port-hook", hook] + pins, in: topology.host).0, 0)
                func attached() throws -> Bool {
                    hook == "tc"
                        ? try topology.run(in: "host", ["tc", "filter", "show", "dev", "vethweb", "ingress"]).stdout
                            .contains("bpfnet_port_tc")
                        : try topology.run(in: "host", ["ip", "link", "show", "dev", "vethweb"]).stdout.contains("xdp")
                }
                XCTAssertTrue(try attached(), "\(hook): the port program is not attached after load")
                if hook == "tc" {
                    _ = try topology.run(in: "host", ["tc", "filter", "del", "dev", "vethweb", "ingress"])
                } else {
                    _ = try topology.run(in: "host", ["ip", "link", "set", "dev", "vethweb", "xdp", "off"])
                }
                XCTAssertFalse(try attached(), "\(hook): the program is still attached after detaching it")
                let (status, _, stderr) = try bpfnet(
                    ["load", "--config", file, "--port-hook", hook] + pins, in: topology.host)
                XCTAssertEqual(status, 0, "\(hook): \(stderr)")
                XCTAssertTrue(try attached(), "\(hook): load did not put the detached port program back")
            }
            XCTAssertEqual(try bpfnet(["unload"] + pins, in: topology.host).0, 0)
        }
    }

    /// `bpfnet demo --json`: a top-level `matrix` of {from, to, proto, port,
    /// expected, observed} cells for icc=true and icc=false, all as the policy says.
    func testDemoJSONMatrix() throws {
        try requireRoot("bpfnet demo builds namespaces and loads bpfnet")
        let argv = [try DemoLab.locateBPFNet(), "demo", "--json", "--no-bench"]
        let result = try ProcessRunner.run(Command(argv, timeout: .seconds(300)))
        XCTAssertEqual(result.status, .exited(0), result.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let matrix = try XCTUnwrap(report["matrix"] as? [[String: Any]], "no top-level matrix array")
        XCTAssertGreaterThanOrEqual(matrix.count, 20)
        for cell in matrix {
            for key in ["from", "to", "proto", "expected", "observed"] {
                XCTAssertNotNil(cell[key] as? String, "cell without \(key): \(cell)")
            }
            XCTAssertEqual(cell["expected"] as? String, cell["observed"] as? String, "\(cell)")
            XCTAssertEqual(cell["matches"] as? Bool, true, "\(cell)")
        }
        XCTAssertTrue(matrix.contains { $0["port"] is Int }, "no cell names a port")
        XCTAssertEqual(Set(matrix.compactMap { $0["icc"] as? Bool }), [true, false])
        XCTAssertTrue(
            matrix.contains { $0["observed"] as? String == "blocked" }, "nothing blocked: the policy is not in force")
        // Every expected drop names its reason; the two networks' containers are kept apart under both settings.
        for cell in matrix where cell["expected"] as? String == "blocked" {
            XCTAssertNotNil(cell["reason"] as? String, "a drop without its reason: \(cell)")
        }
        let apart = matrix.filter { $0["reason"] as? String == "network" }
        XCTAssertEqual(
            Set(apart.compactMap { $0["icc"] as? Bool }), [true, false], "no cell between the networks: \(apart)")
        XCTAssertTrue(apart.allSatisfy { $0["observed"] as? String == "blocked" }, "\(apart)")
        XCTAssertTrue(
            matrix.contains {
                $0["from"] as? String == "api" && $0["to"] as? String == "store" && $0["icc"] as? Bool == true
                    && $0["observed"] as? String == "blocked" && $0["reason"] as? String == "icc"
            },
            "backend's own icc (off) must hold under bpfnet's icc=true")
    }

    func testUnloadAfterInterruptedLoadCleansUp() throws {
        try withHost { topology in
            let file = try write(policyYAML, to: "policy.yaml")
            let pins = ["--pin-path", workDirectory + "/pins"]
            XCTAssertEqual(try bpfnet(["load", "--config", file] + pins, in: topology.host).0, 0)
            // A `load` that died after attaching but before NAT: the table is
            // missing, programs and pins are there. Unload must still clean up.
            _ = try topology.run(in: "host", ["nft", "delete", "table", "ip", "bpfnet"])
            let (status, _, stderr) = try bpfnet(["unload"] + pins, in: topology.host)
            XCTAssertEqual(status, 0, stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: workDirectory + "/pins/bn_config"))
            let filters = try topology.run(in: "host", ["tc", "filter", "show", "dev", "vethweb", "ingress"]).stdout
            XCTAssertFalse(filters.contains("bpfnet"), filters)
            XCTAssertEqual(try clsact(topology), [], "the pinned record says bpfnet created the clsact qdisc")
        }
    }
}
