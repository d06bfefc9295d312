// SPDX-License-Identifier: Apache-2.0
//
// Build-tool plugin: compiles every bpf/*.bpf.c of the package with the
// toolchain's clang (-target bpf) and turns each object into generated Swift
// (BPFEmbed), so the eBPF objects ship inside the binary and nothing generated
// is committed. A new .bpf.c file is picked up after Package.swift changes
// (SwiftPM re-runs plugins only then).

import Foundation
import PackagePlugin

@main
struct BPFCompiler: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) async throws -> [Command] {
        let packageDir = context.package.directoryURL
        let bpfDir = packageDir.appending(path: "bpf")
        let includeDir = bpfDir.appending(path: "include")
        let clang = try context.tool(named: "clang").url
        let embed = try context.tool(named: "BPFEmbed").url
        let fm = FileManager.default

        let sources = try fm.contentsOfDirectory(at: bpfDir, includingPropertiesForKeys: nil)
            .filter { $0.lastPathComponent.hasSuffix(".bpf.c") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        // Every header is an input of every object: a change anywhere rebuilds all.
        let headers = ((try? fm.contentsOfDirectory(at: includeDir, includingPropertiesForKeys: nil)) ?? [])
            .filter { $0.pathExtension == "h" }

        var commands: [Command] = []
        for source in sources {
            let stem = String(source.lastPathComponent.dropLast(".bpf.c".count))
            let object = context.pluginWorkDirectoryURL.appending(path: "\(stem).bpf.o")
            let swift = context.pluginWorkDirectoryURL.appending(path: "BPFObject_\(stem).swift")
            commands.append(
                .buildCommand(
                    displayName: "Compiling eBPF \(source.lastPathComponent)",
                    executable: clang,
                    arguments: [
                        "-target", "bpf", "-mcpu=v3", "-O2", "-g",
                        "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
                        "-I", includeDir.path(),
                        // Debian keeps asm/types.h under the multiarch directory.
                        "-idirafter", "/usr/include/x86_64-linux-gnu",
                        "-idirafter", "/usr/include/aarch64-linux-gnu",
                        "-idirafter", "/usr/include",
                        "-c", source.path(), "-o", object.path(),
                    ],
                    inputFiles: [source] + headers,
                    outputFiles: [object]
                ))
            commands.append(
                .buildCommand(
                    displayName: "Embedding eBPF \(stem).bpf.o",
                    executable: embed,
                    arguments: [object.path(), swift.path(), stem],
                    inputFiles: [object],
                    outputFiles: [swift]
                ))
        }
        return commands
    }
}
