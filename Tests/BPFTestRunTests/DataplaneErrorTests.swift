// SPDX-License-Identifier: Apache-2.0
//
// DataplaneError's cases are what callers branch on (no root needed): the
// classes of BPFError and LinuxNetError carry over when a message wraps them,
// a failed system call is classed by its errno, and only bad input is exit 2.

import BPF
import BPFNetCore
import BPFNetDataplane
import Foundation
import SystemPackage
import XCTest

final class DataplaneErrorTests: XCTestCase {
    func testBPFErrorsKeepTheirClass() {
        func wrapped(_ errno: Errno, verifierLog: String? = nil) -> DataplaneError {
            let error = BPFError(operation: "bpf_xdp_attach", errno: errno, verifierLog: verifierLog)
            return DataplaneError("bpf: attaching port to veth0: \(error)", classifying: error)
        }
        XCTAssertTrue(wrapped(.noSuchFileOrDirectory).isNotFound)
        XCTAssertTrue(wrapped(.operationNotSupportedByDevice).isNotFound)
        XCTAssertTrue(wrapped(.noSpace).isNoSpace)
        XCTAssertTrue(wrapped(.argListTooLong).isNoSpace)
        XCTAssertTrue(wrapped(.notPermitted).isPermission)
        XCTAssertTrue(wrapped(.resourceBusy).isBusy)
        XCTAssertTrue(wrapped(.fileExists).isBusy)
        // The verifier answers EACCES too: that is no missing privilege.
        XCTAssertEqual(
            wrapped(.permissionDenied, verifierLog: "R0 !read_ok"),
            .runtime(wrapped(.permissionDenied, verifierLog: "R0 !read_ok").description))
        XCTAssertEqual(wrapped(.invalidArgument), .runtime(wrapped(.invalidArgument).description))
        let message = wrapped(.resourceBusy).description
        XCTAssertEqual(wrapped(.resourceBusy), .busy(message))
        XCTAssertTrue(message.hasPrefix("bpf: attaching port to veth0: bpf: bpf_xdp_attach: "), message)
    }

    func testLinuxNetAndSystemErrorsAreClassedByErrno() {
        let missing = LinuxNetError(
            operation: "open(/run/netns/x)", action: "opening network namespace /run/netns/x",
            errno: ENOENT)
        XCTAssertEqual(DataplaneError("no namespace", classifying: missing), .notFound("no namespace"))
        XCTAssertEqual(DataplaneError("odd", classifying: CocoaError(.fileNoSuchFile)), .runtime("odd"))
        XCTAssertTrue(DataplaneError.system("writing /proc/sys/net/ipv4/ip_forward", errno: EACCES).isPermission)
        XCTAssertTrue(DataplaneError.system("ethtool: turning GRO on of eth0", errno: ENODEV).isNotFound)
        XCTAssertFalse(DataplaneError.system("x", errno: EIO).isNotFound)
        XCTAssertEqual(DataplaneError("again", classifying: DataplaneError.busy("held")), .busy("again"))
    }

    func testOnlyBadInputIsTheOperatorsFault() {
        XCTAssertTrue(DataplaneError.badInput("bridge docker9: no such interface").isBadInput)
        for error in [
            DataplaneError.notFound("a"), .noSpace("b"), .permission("c"), .busy("d"),
            .system("e", errno: ENOENT), .command("f", status: 1, stderr: ""), .runtime("g"),
        ] {
            XCTAssertFalse(error.isBadInput, "\(error)")
            XCTAssertFalse(error.description.isEmpty)
        }
        let message = "bpf: nothing is loaded at /x"
        XCTAssertEqual(DataplaneError.notFound(message).description, message)
    }

    func testInMemoryStatusWithNothingLoadedIsNotFound() {
        XCTAssertThrowsError(try InMemoryDataplane().status()) { error in
            XCTAssertTrue((error as? DataplaneError)?.isNotFound == true, "\(error)")
        }
    }
}
