import BPFNetShared
import XCTest

@testable import BPFNetCore

/// The C header asserts these sizes with _Static_assert for the BPF target and
/// the host compiler; Swift must see the same layout, or map writes would be
/// garbage.
final class SharedLayoutTests: XCTestCase {
    func testSizes() {
        XCTAssertEqual(MemoryLayout<bpfnet_config>.size, 32)
        XCTAssertEqual(MemoryLayout<bpfnet_container>.size, 12)
        XCTAssertEqual(MemoryLayout<bpfnet_port>.size, 16)
        XCTAssertEqual(MemoryLayout<bpfnet_network>.size, 32)
        XCTAssertEqual(MemoryLayout<bpfnet_subnet_key>.size, 8)
        XCTAssertEqual(MemoryLayout<bpfnet_subnet>.size, 8)
        XCTAssertEqual(MemoryLayout<bpfnet_mac_key>.size, 8)
        XCTAssertEqual(MemoryLayout<bpfnet_container_name>.size, 64)
        XCTAssertEqual(MemoryLayout<bpfnet_link_key>.size, 12)
        XCTAssertEqual(MemoryLayout<bpfnet_link_value>.size, 4)
        XCTAssertEqual(MemoryLayout<bpfnet_published_key>.size, 8)
        XCTAssertEqual(MemoryLayout<bpfnet_published_value>.size, 8)
        XCTAssertEqual(MemoryLayout<bpfnet_ext_if>.size, 4)
        XCTAssertEqual(MemoryLayout<bpfnet_allow_key>.size, 12)
        XCTAssertEqual(MemoryLayout<bpfnet_counter>.size, 16)
        XCTAssertEqual(MemoryLayout<bpfnet_attach_key>.size, 8)
        XCTAssertEqual(MemoryLayout<bpfnet_attach_value>.size, 8)
        XCTAssertEqual(MemoryLayout<bpfnet_drop_event>.size, 32)
        XCTAssertEqual(MemoryLayout<bpfnet_drop_rate>.size, 32)
        XCTAssertEqual(MemoryLayout<bpfnet_nat_key>.size, 16)
        XCTAssertEqual(MemoryLayout<bpfnet_nat_entry>.size, 64)
        XCTAssertEqual(MemoryLayout<bpfnet_nat_frag_key>.size, 12)
        XCTAssertEqual(MemoryLayout<bpfnet_nat_frag>.size, 24)
    }

    func testStridesHaveNoTailPadding() {
        XCTAssertEqual(MemoryLayout<bpfnet_config>.stride, 32)
        XCTAssertEqual(MemoryLayout<bpfnet_container>.stride, 12)
        XCTAssertEqual(MemoryLayout<bpfnet_port>.stride, 16)
        XCTAssertEqual(MemoryLayout<bpfnet_network>.stride, 32)
        XCTAssertEqual(MemoryLayout<bpfnet_link_key>.stride, 12)
        XCTAssertEqual(MemoryLayout<bpfnet_allow_key>.stride, 12)
        // bn_nat is read in batches: keys and values packed at their strides.
        XCTAssertEqual(MemoryLayout<bpfnet_nat_key>.stride, 16)
        XCTAssertEqual(MemoryLayout<bpfnet_nat_entry>.stride, 64)
    }

    func testFieldOffsets() {
        XCTAssertEqual(MemoryLayout<bpfnet_config>.offset(of: \.flags), 0)
        XCTAssertEqual(MemoryLayout<bpfnet_config>.offset(of: \.bridge_addr), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_config>.offset(of: \.bridge_subnet), 8)
        XCTAssertEqual(MemoryLayout<bpfnet_config>.offset(of: \.bridge_netmask), 12)
        XCTAssertEqual(MemoryLayout<bpfnet_config>.offset(of: \.bridge_ifindex), 16)
        XCTAssertEqual(MemoryLayout<bpfnet_config>.offset(of: \.generation), 20)
        XCTAssertEqual(MemoryLayout<bpfnet_config>.offset(of: \.bridge_mac), 24)
        XCTAssertEqual(MemoryLayout<bpfnet_port>.offset(of: \.mac), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_port>.offset(of: \.flags), 10)
        XCTAssertEqual(MemoryLayout<bpfnet_container>.offset(of: \.mac), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_port>.offset(of: \.network), 12)
        XCTAssertEqual(MemoryLayout<bpfnet_container>.offset(of: \.network), 10)
        XCTAssertEqual(MemoryLayout<bpfnet_network>.offset(of: \.bridge_ifindex), 16)
        XCTAssertEqual(MemoryLayout<bpfnet_network>.offset(of: \.bridge_mac), 20)
        XCTAssertEqual(MemoryLayout<bpfnet_subnet>.offset(of: \.bridge_addr), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_peer>.size, 8)
        XCTAssertEqual(MemoryLayout<bpfnet_peer>.offset(of: \.flags), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_subnet6_key>.size, 20)
        XCTAssertEqual(MemoryLayout<bpfnet_subnet6_key>.offset(of: \.addr), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_subnet6>.size, 20)
        XCTAssertEqual(MemoryLayout<bpfnet_subnet6>.offset(of: \.bridge_addr), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_addr6>.size, 16)
        XCTAssertEqual(MemoryLayout<bpfnet_link_key>.offset(of: \.daddr), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_link_key>.offset(of: \.port), 8)
        XCTAssertEqual(MemoryLayout<bpfnet_link_key>.offset(of: \.proto), 10)
        XCTAssertEqual(MemoryLayout<bpfnet_link_key>.offset(of: \.dir), 11)
        XCTAssertEqual(MemoryLayout<bpfnet_published_key>.offset(of: \.host_port), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_published_key>.offset(of: \.proto), 6)
        XCTAssertEqual(MemoryLayout<bpfnet_published_value>.offset(of: \.container_port), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_allow_key>.offset(of: \.ifindex), 4)
        XCTAssertEqual(MemoryLayout<bpfnet_allow_key>.offset(of: \.addr), 8)
    }

    func testMapKindSizesMatchStructs() {
        XCTAssertEqual(MapKind.links.keySize, 12)
        XCTAssertEqual(MapKind.names.valueSize, 64)
        XCTAssertEqual(MapKind.config.keySize, 4)
        XCTAssertEqual(MapKind.macs.valueSize, 4)
    }

    func testMapNamesComeFromTheHeader() {
        XCTAssertEqual(
            MapKind.allCases.map(\.mapName),
            [
                "bn_config", "bn_containers", "bn_macs", "bn_links", "bn_published", "bn_ext_ifs",
                "bn_allow_src", "bn_names", "bn_ports", "bn_allow_src6", "bn_networks", "bn_subnets", "bn_peers",
                "bn_subnets6", "bn_containers6",
            ])
        XCTAssertEqual(MapKind.name(of: BPFNET_MAP_ID_COUNTERS), "bn_counters")
        XCTAssertEqual(MapKind.name(of: BPFNET_MAP_ID_ATTACH), "bn_attach")
        XCTAssertEqual(MapKind.name(of: BPFNET_MAP_ID_PORTS_HIGH), "bn_ports_high")
        for kind in MapKind.allCases { XCTAssertLessThanOrEqual(kind.mapName.utf8.count, 15) }
    }

    func testReasonsMirrorTheEnum() {
        XCTAssertEqual(Reason.nonIP.rawValue, 1)
        XCTAssertEqual(Reason.fragment.rawValue, 13)
        XCTAssertEqual(Reason.icc.rawValue, 32)
        XCTAssertEqual(Reason.malformed.rawValue, 35)
        for reason in Reason.allKnown {
            XCTAssertEqual(reason.isDrop, reason.rawValue >= 32, reason.name)
            XCTAssertEqual(Reason(name: reason.name), reason)
            XCTAssertLessThan(Int(reason.rawValue), Reason.slotsPerProgram)
        }
        XCTAssertEqual(Set(Reason.allKnown.map(\.name)).count, Reason.allKnown.count, "names are unique")
        XCTAssertEqual(Reason(rawValue: 45).name, "reason-45")
        XCTAssertEqual(Reason(name: "reason-45"), Reason(rawValue: 45))
        XCTAssertEqual(ProgramKind.extXDP.counterIndex(.malformed), 2 * 48 + 35)
        XCTAssertEqual(ProgramKind.counterSlots, 144)
    }
}
