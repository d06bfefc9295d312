// SPDX-License-Identifier: Apache-2.0

import Foundation
import XCTest

/// Root-only tests skip without root, unless BPFNET_REQUIRE_ROOT_TESTS=1
/// (CI), where a missing root is a failure.
func requireRoot(_ what: String) throws {
    guard geteuid() != 0 else { return }
    if ProcessInfo.processInfo.environment["BPFNET_REQUIRE_ROOT_TESTS"] == "1" {
        XCTFail("requires root: \(what) (BPFNET_REQUIRE_ROOT_TESTS=1 makes this a failure)")
        throw XCTSkip("not root")
    }
    throw XCTSkip("requires root: \(what)")
}

/// The `bpfnet bench --json` schema of issue 5, checked key for key:
/// { "profile", "packetBytes", "rounds", "results": [ { "variant", "links",
/// "flows", "nsPerPacket": {"min","median","max"}, "mppsPerCore", "sent",
/// "delivered", "ratioToBridge": {"min","median","max"} } ] }; a result of a
/// run with `--networks K` (K > 1) also has "networks", and a run with
/// `--direction ingress` has "direction" at the top ("links" is then N
/// published ports).
enum BenchSchema {
    enum Kind { case string, integer, number, spread, results }

    static let top: [String: Kind] = [
        "profile": .string, "packetBytes": .integer, "rounds": .integer, "results": .results,
    ]
    static let result: [String: Kind] = [
        "variant": .string, "links": .integer, "flows": .integer, "nsPerPacket": .spread, "mppsPerCore": .number,
        "sent": .integer, "delivered": .integer, "ratioToBridge": .spread,
    ]
    static let spread: [String: Kind] = ["min": .number, "median": .number, "max": .number]
    /// Keys a result may have, checked when present.
    static let optional: [String: Kind] = ["networks": .integer]
    /// Keys the top level may have, checked when present.
    static let optionalTop: [String: Kind] = ["direction": .string]

    /// Every deviation from the schema, as "path: problem"; empty when it conforms.
    static func problems(in data: Data) -> [String] {
        guard let object = try? JSONSerialization.jsonObject(with: data) else { return ["$: not JSON"] }
        return check(object, against: top, at: "$")
    }

    private static func check(_ value: Any, against fields: [String: Kind], at path: String) -> [String] {
        guard let object = value as? [String: Any] else { return ["\(path): not an object"] }
        var problems: [String] = []
        let optionalHere = fields == result ? optional : fields == top ? optionalTop : [:]
        let allowed = fields.merging(optionalHere) { required, _ in required }
        for key in Set(object.keys).subtracting(allowed.keys).sorted() {
            problems.append("\(path).\(key): not in the schema")
        }
        for (key, kind) in optionalHere.sorted(by: { $0.key < $1.key }) {
            if let field = object[key] { problems += check(field, kind, at: "\(path).\(key)") }
        }
        for (key, kind) in fields.sorted(by: { $0.key < $1.key }) {
            guard let field = object[key] else {
                problems.append("\(path).\(key): missing")
                continue
            }
            problems += check(field, kind, at: "\(path).\(key)")
        }
        return problems
    }

    private static func check(_ value: Any, _ kind: Kind, at path: String) -> [String] {
        switch kind {
        case .string:
            return value is String ? [] : ["\(path): not a string"]
        case .number:
            guard !(value is String), let number = value as? Double, number.isFinite else {
                return ["\(path): not a number"]
            }
            return []
        case .integer:
            guard !(value is String), let number = value as? Double, number.isFinite, number == number.rounded(),
                number >= 0
            else { return ["\(path): not a non-negative integer"] }
            return []
        case .spread:
            return check(value, against: spread, at: path)
        case .results:
            guard let array = value as? [Any] else { return ["\(path): not an array"] }
            return array.enumerated().flatMap { check($0.element, against: result, at: "\(path)[\($0.offset)]") }
        }
    }
}
