// SPDX-License-Identifier: Apache-2.0
//
// Docker's /etc/docker/daemon.json with `"iptables": false` merged in, and
// taken out again. The operator's other keys stay as they are (nested ones
// included); the file is rewritten with sorted keys, so their order and the
// whitespace may change — which is why `bpfnet uninstall` puts the backup's
// bytes back when nothing else changed since (Installer.swift).

import Foundation

/// daemon.json as a JSON object.
public enum DaemonJSON {
    /// The key bpfnet sets: dockerd then writes no iptables rules of its own.
    public static let key = "iptables"

    /// Parses `data` as daemon.json: one JSON object (an empty file counts as `{}`,
    /// which dockerd accepts too).
    /// - Throws: `InstallError.badInput` naming `path` when it is not a JSON object.
    public static func object(from data: Data, path: String) throws(InstallError) -> [String: Any] {
        if data.allSatisfy({ [0x20, 0x09, 0x0A, 0x0D].contains($0) }) { return [:] }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw .badInput(
                "\(path) is not valid JSON (\(reason(of: error))); fix it or leave out --docker-daemon-json; "
                    + "nothing was changed")
        }
        guard let object = parsed as? [String: Any] else {
            throw .badInput("\(path) must hold one JSON object ({...}); nothing was changed")
        }
        return object
    }

    /// `existing` (nil: no file) with `"iptables": false`.
    public static func merged(_ existing: Data?, path: String) throws(InstallError) -> Data {
        var object = try existing.map { data throws(InstallError) in try self.object(from: data, path: path) } ?? [:]
        object[key] = false
        return serialize(object)
    }

    /// `current` with the key as it was in `original` (nil: there was no file,
    /// and so no key): for an operator who edited daemon.json after the install.
    public static func restoringKey(in current: Data, from original: Data?, path: String) throws(InstallError) -> Data {
        var object = try self.object(from: current, path: path)
        let before = try original.map { data throws(InstallError) in try self.object(from: data, path: path) } ?? [:]
        object[key] = before[key]
        return serialize(object)
    }

    /// Whether two daemon.json texts hold the same JSON (key order and
    /// whitespace aside).
    public static func sameContent(_ first: Data, _ second: Data) -> Bool {
        guard let a = try? object(from: first, path: ""), let b = try? object(from: second, path: "") else {
            return false
        }
        // The same serialiser over both: NSDictionary's isEqual does not see into
        // nested arrays of objects on Linux.
        return serialize(a) == serialize(b)
    }

    static func serialize(_ object: [String: Any]) -> Data {
        // Sorted keys: the same input always gives the same file.
        var data =
            (try? JSONSerialization.data(
                withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        data.append(0x0A)
        return data
    }

    private static func reason(of error: Error) -> String {
        let nsError = error as NSError
        return (nsError.userInfo[NSDebugDescriptionErrorKey] as? String) ?? nsError.localizedDescription
    }
}
