import XCTest
import BPFNetShared

final class SharedLayoutTests: XCTestCase {
    func testSizes() { XCTAssertEqual(MemoryLayout<bpfnet_config>.size, 24) }
}
