// SPDX-License-Identifier: Apache-2.0
//
// The NAT table's ownership comment fits nft's 128-character limit whatever the number of
// networks (naming every bridge made `nft -f` refuse the table from five bridges on).

import BPFNetCore
import XCTest

final class NATRulesetCommentTests: XCTestCase {
    func testTheCommentFitsNftsLimitWithManyNetworks() {
        var ruleset = NATRuleset(bridge: "docker0", bridgeSubnet: IPv4CIDR("172.17.0.0/16"), published: [])
        XCTAssertEqual(ruleset.comment, "owned by bpfnet: NAT for the bridge docker0; do not edit, run bpfnet unload")
        ruleset.networks = (0..<64).map {
            NATRuleset.Network(bridge: "br-\(String(format: "%012x", $0))", subnet: nil, masquerade: true)
        }
        XCTAssertLessThanOrEqual(ruleset.comment.count, 128, ruleset.comment)
        XCTAssertTrue(NATRuleset.isOwnComment(ruleset.comment))
        XCTAssertTrue(ruleset.render().contains(ruleset.comment))
    }
}
