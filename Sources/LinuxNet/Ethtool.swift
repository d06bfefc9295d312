// SPDX-License-Identifier: Apache-2.0
//
// The few ethtool settings bpfnet reads and changes (GRO, tx checksum
// offload) and a device's driver, through SIOCETHTOOL's legacy get/set
// commands: what `ethtool -k/-K/-i` does, without a process. The ioctl goes
// to a socket, so it acts in the network namespace of the calling thread;
// for a device in another namespace call it inside `NetworkNamespace.run`.

#if canImport(Glibc)
import Glibc
#endif

/// The few ethtool ioctls needed (SIOCETHTOOL, legacy get/set commands).
public enum Ethtool {
    public enum Feature: Sendable {
        case gro, txChecksum

        var getCommand: UInt32 { self == .gro ? 0x2b : 0x16 }  // ETHTOOL_GGRO, ETHTOOL_GTXCSUM
        var setCommand: UInt32 { self == .gro ? 0x2c : 0x17 }  // ETHTOOL_SGRO, ETHTOOL_STXCSUM
        /// For messages: "GRO", "tx checksum offload".
        public var name: String { self == .gro ? "GRO" : "tx checksum offload" }
    }

    private static let siocEthtool: UInt = 0x8946
    private static let getDriverInfo: UInt32 = 0x3  // ETHTOOL_GDRVINFO
    private static let driverInfoSize = 196  // struct ethtool_drvinfo

    /// Whether `feature` is on at `interface`.
    public static func get(_ interface: String, _ feature: Feature) throws(LinuxNetError) -> Bool {
        var value: [UInt32] = [feature.getCommand, 0]  // struct ethtool_value
        let what = "reading \(feature.name)"
        try value.withUnsafeMutableBytes { bytes in
            Result { () throws(LinuxNetError) in try ioctl(interface, bytes.baseAddress!, what: what) }
        }.get()
        return value[1] != 0
    }

    /// Turns `feature` on or off at `interface`.
    public static func set(_ interface: String, _ feature: Feature, _ on: Bool) throws(LinuxNetError) {
        var value: [UInt32] = [feature.setCommand, on ? 1 : 0]
        let what = "turning \(feature.name) \(on ? "on" : "off")"
        try value.withUnsafeMutableBytes { bytes in
            Result { () throws(LinuxNetError) in try ioctl(interface, bytes.baseAddress!, what: what) }
        }.get()
    }

    /// The driver's name ("veth"), or nil when the device does not say.
    public static func driver(_ interface: String) -> String? {
        var info = [UInt8](repeating: 0, count: driverInfoSize)
        withUnsafeBytes(of: getDriverInfo) { info.replaceSubrange(0..<4, with: $0) }
        let ok = info.withUnsafeMutableBytes { buffer in
            (try? ioctl(interface, buffer.baseAddress!, what: "reading the driver")) != nil
        }
        guard ok else { return nil }
        return String(decoding: info[4..<36].prefix { $0 != 0 }, as: UTF8.self)
    }

    private static func ioctl(
        _ interface: String, _ data: UnsafeMutableRawPointer,
        what: String
    ) throws(LinuxNetError) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            let code = errno
            throw LinuxNetError(
                operation: "socket(AF_INET, SOCK_DGRAM)", action: "socket(AF_INET) for ethtool",
                errno: code)
        }
        defer { close(fd) }
        var request = ifreq()
        let bytes = Array(interface.utf8.prefix(Int(IFNAMSIZ) - 1))
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { name in
            for (index, byte) in bytes.enumerated() { name[index] = byte }
        }
        request.ifr_ifru.ifru_data = data.assumingMemoryBound(to: CChar.self)
        let result = withUnsafeMutablePointer(to: &request) { Glibc.ioctl(fd, siocEthtool, $0) }
        guard result == 0 else {
            let code = errno
            throw LinuxNetError(
                operation: "ioctl(\(interface), SIOCETHTOOL)",
                action: "ethtool: \(what) of \(interface)", errno: code)
        }
    }
}
