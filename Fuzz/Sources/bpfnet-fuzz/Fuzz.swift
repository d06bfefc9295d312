// SPDX-License-Identifier: Apache-2.0
//
// Fuzz targets for the control plane's inputs (docs/verification.md,
// "Fuzzing"): the policy file (complete and settings-only), Docker's JSON
// (container inspect and list, networks, events, info, version) and the frame
// parser of the reference model. One function per target; each input either
// decodes or is refused with an error that names what was wrong, and an
// error that names nothing is a finding (the process traps, as on a crash).
//
// libFuzzer's driver (started by `bpfnet_fuzz_main`, below) calls `fuzzOne`
// for the target named by BPFNET_FUZZ_TARGET; scripts/fuzz.sh builds and runs
// each. Given files instead of a corpus directory, the binary runs each once
// (a replay):
//   BPFNET_FUZZ_TARGET=policy-file Fuzz/.build/debug/bpfnet-fuzz FILE...

import BPFNetCore
import CFuzzer
import DockerWatcher
import Foundation

enum FuzzTarget: String, CaseIterable {
    case policyFile = "policy-file"
    case dockerInspect = "docker-inspect"
    case dockerList = "docker-list"
    case dockerNetworks = "docker-networks"
    case dockerEvent = "docker-event"
    case dockerInfo = "docker-info"
    case frame

    /// Runs one input. Traps on an error that does not say what was wrong.
    func run(_ data: Data) {
        switch self {
        case .policyFile:
            let text = String(decoding: data, as: UTF8.self)
            for kind in [PolicyFileKind.complete, .settingsOnly] {
                do {
                    _ = try PolicyFile.load(yaml: text, file: "fuzz.yaml", kind: kind)
                } catch {
                    require(!error.problems.isEmpty && error.description.contains("fuzz.yaml"), "\(error)")
                }
            }
        case .dockerInspect: decodes { _ = try DockerContainer(inspectJSON: data) }
        case .dockerList: decodes { _ = try DockerContainerSummary.list(fromJSON: data) }
        case .dockerNetworks:
            decodes { _ = try DockerBridgeNetwork.list(fromJSON: data) }
            decodes { _ = try DockerBridgeNetwork(json: data) }
        case .dockerEvent: decodes { _ = try DockerEvent(json: data) }
        case .dockerInfo:
            decodes { _ = try DockerDaemonInfo(json: data) }
            decodes { _ = try DockerVersionInfo(json: data) }
        case .frame:
            _ = FrameParser.parse([UInt8](data))
        }
    }

    private func decodes(_ body: () throws -> Void) {
        do {
            try body()
        } catch {
            require(!"\(error)".isEmpty, "an error with no message: \(type(of: error))")
        }
    }

    private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fatalError("\(rawValue): \(message())") }
    }
}

/// The target for this process, from BPFNET_FUZZ_TARGET (read once).
nonisolated(unsafe) private var selectedTarget: FuzzTarget? = nil

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    if selectedTarget == nil {
        let name = ProcessInfo.processInfo.environment["BPFNET_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            fatalError(
                "BPFNET_FUZZ_TARGET must be one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        selectedTarget = target
    }
    selectedTarget!.run(Data(bytes: bytes, count: count))
    return 0
}

/// The process's entry point: SwiftPM links an executable's `main` to
/// `<target>_main`, which libFuzzer's own main would clash with, so this one
/// hands over to libFuzzer's driver.
@_cdecl("bpfnet_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var count = argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    // libFuzzer passes a pointer for every input, an empty one included.
    return LLVMFuzzerRunDriver(&count, &arguments) { bytes, size in
        fuzzOne(bytes!, size)
    }
}
