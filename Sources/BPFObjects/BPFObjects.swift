// SPDX-License-Identifier: Apache-2.0
//
// The eBPF objects compiled from bpf/*.bpf.c by the BPFCompiler plugin. Each
// bpf/<name>.bpf.c becomes `BPFObjects.<name>` in a generated file.

import Foundation

/// Namespace for the embedded eBPF objects (`BPFObjects.port`, `BPFObjects.ext`, ...).
public enum BPFObjects {}

/// One compiled eBPF ELF object carried inside the binary.
public struct EmbeddedObject: Sendable {
    /// The object's stem, e.g. "port" for bpf/port.bpf.c.
    public let name: String
    /// The ELF bytes.
    public let bytes: [UInt8]

    public init(name: String, base64: String) {
        self.name = name
        guard let data = Data(base64Encoded: base64) else {
            preconditionFailure("BPFEmbed produced invalid base64 for \(name)")
        }
        self.bytes = [UInt8](data)
    }
}
