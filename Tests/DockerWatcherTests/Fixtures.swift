// SPDX-License-Identifier: Apache-2.0
//
// The recorded Engine API answers (docs/docker.md, "The Engine API") and ways to vary them.

import Foundation
import XCTest

enum Fixture {
    /// The bytes of Fixtures/`name`.
    static func data(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> Data {
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") else {
            XCTFail("fixture \(name) is missing from the test bundle", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        return try Data(contentsOf: url)
    }

    /// The non-empty lines of a .jsonl fixture.
    static func lines(_ name: String) throws -> [Data] {
        let text = String(decoding: try data(name), as: UTF8.self)
        return text.split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }.map { Data($0.utf8) }
    }

    /// A fixture as a JSON object, to be edited into a variant.
    static func object(_ name: String) throws -> [String: Any] {
        try json(data(name))
    }

    static func json(_ data: Data) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CocoaError(.coderReadCorrupt)
        }
        return object
    }

    static func data(_ object: Any) throws -> Data {
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }

    /// Sets the value at a dotted path ("NetworkSettings.Networks.bridge.IPAddress"), creating
    /// objects on the way; `NSNull()` writes null, nil removes the key.
    static func set(_ object: inout [String: Any], _ path: String, _ value: Any?) {
        var keys = path.split(separator: ".").map(String.init)
        let last = keys.removeLast()
        func update(_ dict: inout [String: Any], _ remaining: ArraySlice<String>) {
            guard let key = remaining.first else {
                dict[last] = value
                return
            }
            var child = dict[key] as? [String: Any] ?? [:]
            update(&child, remaining.dropFirst())
            dict[key] = child
        }
        update(&object, keys[...])
    }

    /// The trimmed recordings (only the fields under study) lack Id and State: add them.
    static func completed(_ name: String, id: String = "0123456789ab", running: Bool = true, pid: Int = 4242) throws
        -> Data
    {
        var object = try object(name)
        if object["Id"] == nil { object["Id"] = id }
        if object["Name"] == nil { object["Name"] = "/\(name.split(separator: ".")[0])" }
        if object["State"] == nil { object["State"] = ["Running": running, "Pid": running ? pid : 0] }
        return try data(object)
    }
}
