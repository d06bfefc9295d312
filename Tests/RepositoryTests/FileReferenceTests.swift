// SPDX-License-Identifier: Apache-2.0
//
// The repository stands alone: whoever clones it can open every document and
// file that its help texts, docs, comments and scripts send them to. Two kinds
// of reference are checked: names of Markdown files, and paths under the
// repository's own top-level directories. A reference
// that leaves the repository (a parent directory, a machine's own path) fails
// as well. No root needed: the help texts come from running the built
// `bpfnet` with `--help` for every subcommand.

import Foundation
import LinuxNet
import XCTest

final class FileReferenceTests: XCTestCase {
    func testDocsCommentsAndScriptsReferOnlyToFilesTheRepositoryHas() throws {
        let repository = try Repository()
        var problems: [String] = []
        for file in repository.scannedFiles() {
            let text = try String(contentsOfFile: repository.root + "/" + file, encoding: .utf8)
            problems += repository.brokenReferences(in: text, of: file)
        }
        XCTAssert(
            problems.isEmpty, "references to files this repository does not have:\n" + problems.joined(separator: "\n"))
    }

    func testHelpTextsReferOnlyToFilesTheRepositoryHas() throws {
        let repository = try Repository()
        let helps = try HelpTexts.collect(binary: try HelpTexts.locateBPFNet())
        XCTAssertGreaterThan(helps.count, 5, "expected the help of every subcommand: \(helps.keys.sorted())")
        var problems: [String] = []
        for (command, text) in helps.sorted(by: { $0.key < $1.key }) {
            problems += repository.brokenReferences(in: text, of: nil).map { "`\(command) --help`: \($0)" }
        }
        XCTAssert(
            problems.isEmpty,
            "help texts refer to files this repository does not have:\n" + problems.joined(separator: "\n"))
        let load = try XCTUnwrap(helps["bpfnet load"], "no help for bpfnet load: \(helps.keys.sorted())")
        XCTAssertTrue(
            load.contains("docs/policy-file.md"), "`bpfnet load --help` must name docs/policy-file.md:\n\(load)")
    }

    /// The scanner itself: what it must catch and what it must let through.
    func testTheScannerFindsWhatItShould() throws {
        let repository = try Repository()
        // Spelled in pieces, so that this file itself refers to nothing missing.
        let md = "." + "md"
        let bad = [
            "see DESIGN\(md) section 4",
            "(" + "docs" + "/nosuch\(md))",
            "the rule in .." + "/shared/notes\(md)",
            "Sources" + "/NoSuchModule/File.swift",
        ]
        for line in bad {
            XCTAssertFalse(repository.brokenReferences(in: line, of: "README.md").isEmpty, "not caught: \(line)")
        }
        let good = [
            "see [verdicts.md](verdicts.md)",
            "docs/policy-file.md, \"Errors\".",
            "the header bpf/include/bpfnet_shared.h; bpf/include/*.h",
            "Tests/BPFNetCoreTests/SharedLayoutTests checks the sizes",
            "https://github.com/apple/swift-nio/blob/main/README.md",
            "mounted at /sys/fs/bpf/bpfnet",
        ]
        for line in good {
            XCTAssertEqual(repository.brokenReferences(in: line, of: "docs/agent.md"), [], "wrongly flagged: \(line)")
        }
    }

    /// The policy file fixture the tests load is the example docs/policy-file.md shows.
    func testThePolicyFileExampleIsTheFixture() throws {
        let repository = try Repository()
        let doc = try String(contentsOfFile: repository.root + "/docs/policy-file.md", encoding: .utf8)
        let example = try XCTUnwrap(
            doc.components(separatedBy: "```yaml\n").dropFirst().first?.components(separatedBy: "```").first,
            "docs/policy-file.md has no ```yaml block")
        let fixture = try String(
            contentsOfFile: repository.root + "/Tests/BPFNetCoreTests/Fixtures/policy-file-example.yaml",
            encoding: .utf8)
        let fixtureBody = fixture.split(separator: "\n", omittingEmptySubsequences: false)
            .drop { $0.hasPrefix("#") }.joined(separator: "\n")
        XCTAssertEqual(example, fixtureBody)
    }
}

/// The checkout the tests run from, and what in it refers to files.
struct Repository {
    /// The directories whose files are read; with README.md and Package.swift.
    static let scannedDirectories = ["docs", "Sources", "Tests", "scripts", "bpf", "Plugins", "Benchmarks", ".ci"]
    /// Text files by ending; files without one are read in scripts/ and .ci/.
    static let scannedEndings = [".swift", ".md", ".c", ".h", ".sh", ".yaml", ".yml", ".modulemap"]
    /// Paths under these are references to files of the repository.
    static let topLevel = ["docs", "Sources", "Tests", "scripts", "bpf", "Plugins", "Benchmarks", ".ci"]

    let root: String
    /// Every file and directory, relative to the root.
    let paths: Set<String>
    /// Every file's last path component.
    let fileNames: Set<String>

    init(file: StaticString = #filePath) throws {
        // Tests/RepositoryTests/FileReferenceTests.swift → the package root.
        let root = URL(fileURLWithPath: "\(file)").deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: root + "/Package.swift") else {
            throw XCTSkip("the sources are not at \(root) (this test reads the checkout it was built from)")
        }
        self.root = root
        var paths = Set<String>()
        var fileNames = Set<String>()
        let enumerator = FileManager.default.enumerator(atPath: root)
        while let path = enumerator?.nextObject() as? String {
            let name = (path as NSString).lastPathComponent
            if name.hasPrefix(".build") || name == ".git" || name == ".swiftpm" {
                enumerator?.skipDescendants()
                continue
            }
            paths.insert(path)
            fileNames.insert(name)
        }
        self.paths = paths
        self.fileNames = fileNames
    }

    func scannedFiles() -> [String] {
        paths.filter { path in
            if path == "README.md" || path == "Package.swift" { return true }
            guard let top = path.split(separator: "/").first, Self.scannedDirectories.contains(String(top)) else {
                return false
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: root + "/" + path, isDirectory: &isDirectory),
                !isDirectory.boolValue
            else { return false }
            let name = (path as NSString).lastPathComponent
            if Self.scannedEndings.contains(where: { name.hasSuffix($0) }) { return true }
            return (top == "scripts" || top == ".ci") && !name.contains(".")
        }.sorted()
    }

    /// The references in `text` (of the repository file `file`, nil for a
    /// help text) that name nothing in the repository, one line each.
    func brokenReferences(in text: String, of file: String?) -> [String] {
        var problems: [String] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let place = file.map { "\($0):\(number + 1)" } ?? "line \(number + 1)"
            // Addresses on the web are not files of the repository.
            let local = String(line).replacing(/[a-z][a-z0-9+.-]*:\/\/[^\s)>\]"'`]+/, with: " ")
            for token in Self.tokens(in: local) where !resolves(token, from: file) {
                problems.append("\(place): \(token) — \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
        return problems
    }

    /// Candidate references: words made of path characters that end in `.md`,
    /// start at a top-level directory, or climb out of the directory (`../`).
    static func tokens(in line: String) -> [String] {
        var result: [String] = []
        for match in line.matches(of: /[A-Za-z0-9_.\/+*-]+/) {
            // A path inside a longer one (/sys/fs/bpf/...) is not ours.
            if match.range.lowerBound > line.startIndex {
                let before = line[line.index(before: match.range.lowerBound)]
                // Nor is a system header (#include <bpf/libbpf.h>).
                if before == "/" || before == "~" || before == "$" || before == "<" { continue }
            }
            var word = String(match.output)
            while let last = word.last, ".,;:".contains(last) { word.removeLast() }
            guard !word.isEmpty, word != ".md" else { continue }
            let first = word.split(separator: "/", omittingEmptySubsequences: false).first.map(String.init) ?? ""
            if word.hasSuffix(".md") || word.hasPrefix("../") || (topLevel.contains(first) && word.contains("/")) {
                result.append(word)
            }
        }
        return result
    }

    /// Whether `token` names a file or directory of the repository, relative
    /// to `file`'s directory or to the root; a bare Markdown name may stand
    /// for a file of that name anywhere in it. Globs count from their fixed part.
    func resolves(_ token: String, from file: String?) -> Bool {
        let fixed = String(token.prefix { $0 != "*" })
        let candidates = [file.map { ($0 as NSString).deletingLastPathComponent } ?? "", ""].map { base in
            Self.normalized(base.isEmpty ? fixed : base + "/" + fixed)
        }
        for candidate in candidates {
            guard let candidate else { continue }  // climbs out of the repository
            let trimmed = candidate.hasSuffix("/") ? String(candidate.dropLast()) : candidate
            if trimmed.isEmpty || paths.contains(trimmed) { return true }
            if token.contains("*") {
                // A glob: something matches its fixed part.
                if paths.contains(where: { $0.hasPrefix(candidate) }) { return true }
            } else if paths.contains(where: { $0.hasPrefix(trimmed + ".") }) {
                // A file named without its ending (a test suite by its class name).
                return true
            }
        }
        return !token.contains("/") && fileNames.contains(token)
    }

    /// `a/b/../c` → `a/c`; nil when the path leaves the repository.
    static func normalized(_ path: String) -> String? {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: false) {
            switch part {
            case "", ".": continue
            case "..":
                guard !parts.isEmpty else { return nil }
                parts.removeLast()
            default: parts.append(part)
            }
        }
        return parts.joined(separator: "/") + (path.hasSuffix("/") ? "/" : "")
    }
}

/// `bpfnet --help` and the help of every subcommand, found by walking the
/// SUBCOMMANDS sections.
enum HelpTexts {
    static func locateBPFNet() throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["BPFNET_BINARY"] { return explicit }
        // The test bundle runs from the build directory, next to the products.
        let runner = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let sibling = runner.deletingLastPathComponent().appendingPathComponent("bpfnet").path
        guard FileManager.default.isExecutableFile(atPath: sibling) else {
            throw XCTSkip("no bpfnet binary at \(sibling): build it first (swift build --build-tests)")
        }
        return sibling
    }

    /// Command line ("bpfnet load") → its help text.
    static func collect(binary: String) throws -> [String: String] {
        var result: [String: String] = [:]
        var queue: [[String]] = [[]]
        while let subcommand = queue.first {
            queue.removeFirst()
            let run = try ProcessRunner.run(Command([binary] + subcommand + ["--help"], timeout: .seconds(30)))
            XCTAssertEqual(run.status, .exited(0), "bpfnet \(subcommand.joined(separator: " ")) --help: \(run)")
            result[(["bpfnet"] + subcommand).joined(separator: " ")] = run.stdout
            queue += subcommands(in: run.stdout).map { subcommand + [$0] }
        }
        return result
    }

    /// The names listed under SUBCOMMANDS (the first word of lines indented by two).
    static func subcommands(in help: String) -> [String] {
        guard let section = help.components(separatedBy: "SUBCOMMANDS:\n").dropFirst().first else { return [] }
        var names: [String] = []
        for line in section.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { break }
            guard line.hasPrefix("  "), !line.hasPrefix("   ") else { continue }
            let name = line.dropFirst(2).prefix { !$0.isWhitespace }
            if !name.isEmpty { names.append(String(name)) }
        }
        return names.filter { $0 != "help" }
    }
}
