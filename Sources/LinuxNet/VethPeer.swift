// SPDX-License-Identifier: Apache-2.0
//
// A veth's peer, wherever it lives. rtnetlink gives the peer's ifindex
// (IFLA_LINK) and, when it is in another network namespace, that namespace's
// id as this namespace numbers it (IFLA_LINK_NETNSID). Nothing maps an id back
// to a namespace, so the id is matched to a namespace file by asking
// RTM_GETNSID about each candidate (/run/netns/*, /proc/*/ns/net), once per
// locator; the peer is then read inside that namespace and must point back.

#if canImport(Glibc)
import Glibc
#endif

/// A veth's peer: its namespace (held open), its ifindex and its name there.
public struct VethPeer: Sendable {
    public var namespace: NetworkNamespace
    public var index: Int32
    public var name: String

    public init(namespace: NetworkNamespace, index: Int32, name: String) {
        self.namespace = namespace
        self.index = index
        self.name = name
    }
}

/// Why a link's peer could not be found.
public enum VethPeerError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The link has no peer: it is no veth.
    case notAVeth(link: String)
    /// No process holds the peer's namespace and it has no /run/netns name
    /// (or neither can be opened).
    case namespaceNotFound(link: String, nsid: Int32)
    /// The ifindex in the peer's namespace belongs to an interface that does
    /// not point back at the link (the peer is gone, the index reused).
    case notThePeer(link: String, index: Int32, namespace: String)

    public var description: String {
        switch self {
        case .notAVeth(let link):
            "\(link) has no peer (not a veth)"
        case .namespaceNotFound(let link, let nsid):
            "the namespace of \(link)'s peer (nsid \(nsid)) has no process and no /run/netns name "
                + "this process could open"
        case .notThePeer(let link, let index, let namespace):
            "ifindex \(index) in \(namespace) is not \(link)'s peer"
        }
    }
}

/// Resolves the peers of veths of the calling thread's namespace. The
/// namespace ids are matched to namespace files on first use and kept: make
/// one locator per pass over the interfaces.
public final class VethPeerLocator {
    /// nsid (as seen from this namespace) → namespace file, built on first use.
    private var namespaces: [Int32: String]?

    public init() {}

    /// The peer of `link` (a link of the calling thread's namespace).
    public func peer(of link: RouteNetlink.Link) throws -> VethPeer {
        // The kernel leaves IFLA_LINK out when it is the device's own index; a
        // peer in another namespace may well carry the same number there.
        guard let peerIndex = link.link, peerIndex != 0, peerIndex != link.index || link.linkNetnsid != nil else {
            throw VethPeerError.notAVeth(link: link.name)
        }
        let namespace: NetworkNamespace
        if let nsid = link.linkNetnsid, nsid >= 0 {
            guard let path = try namespacePath(nsid: nsid) else {
                throw VethPeerError.namespaceNotFound(link: link.name, nsid: nsid)
            }
            namespace = try NetworkNamespace(path: path)
        } else {
            namespace = try NetworkNamespace.current()
        }
        let name = try namespace.run { () throws -> String in
            // Another interface may carry that ifindex there: it must point back.
            guard let inner = try RouteNetlink().link(index: peerIndex), inner.link == link.index else {
                throw VethPeerError.notThePeer(link: link.name, index: peerIndex, namespace: namespace.path)
            }
            return inner.name
        }
        return VethPeer(namespace: namespace, index: peerIndex, name: name)
    }

    private func namespacePath(nsid: Int32) throws(LinuxNetError) -> String? {
        if namespaces == nil { namespaces = try Self.scan() }
        return namespaces?[nsid]
    }

    /// Every namespace this process can open, keyed by the nsid this namespace gives it.
    private static func scan() throws(LinuxNetError) -> [Int32: String] {
        var candidates = directoryEntries("/run/netns").sorted().map { "/run/netns/\($0)" }
        candidates += directoryEntries("/proc").filter { $0.allSatisfy(\.isNumber) }.map { "/proc/\($0)/ns/net" }
        var seen = Set<[UInt64]>()
        var result: [Int32: String] = [:]
        let netlink = try RouteNetlink()
        for path in candidates {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var info = stat()
            guard fstat(fd, &info) == 0, seen.insert([UInt64(info.st_dev), UInt64(info.st_ino)]).inserted else {
                continue
            }
            if let nsid = try? netlink.nsid(ofNamespaceFD: fd), nsid >= 0, result[nsid] == nil {
                result[nsid] = path
            }
        }
        return result
    }

    /// The names in `directory` (without "." and ".."); none when it cannot be read.
    private static func directoryEntries(_ directory: String) -> [String] {
        guard let stream = opendir(directory) else { return [] }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
