import BPFNetShared
import BPFNetTestSupport
import XCTest

@testable import BPFNetCore

final class ReconcilerTests: XCTestCase {
    func compile(_ policy: Policy) -> MapState { Sample.state(policy) }

    /// Applies `changes` to `state` through the in-memory maps.
    func applied(_ changes: [MapChange], to state: MapState) -> MapState {
        var maps = InMemoryMaps(state: state)
        try! maps.apply(changes)
        return maps.state
    }

    func assertReaches(_ desired: MapState, from current: MapState, line: UInt = #line) {
        let result = applied(current.changes(to: desired), to: current)
        var expected = desired
        expected.config.generation = current.config.generation &+ 1
        XCTAssertEqual(result, expected, line: line)
        XCTAssertEqual(result.changes(to: desired), [], "a second pass has nothing to do", line: line)
    }

    // MARK: Minimality and correctness

    func testNothingToDo() {
        let state = compile(Sample.policy)
        XCTAssertEqual(state.changes(to: state), [])
        var bumped = state
        bumped.config.generation = 41
        XCTAssertEqual(bumped.changes(to: state), [], "generation alone is not a change")
    }

    func testInitialLoadOrder() {
        let desired = compile(Sample.policy)
        let changes = MapState.empty.changes(to: desired)
        XCTAssertEqual(changes.count, 1 + 8 + 2 + 2 + 2 + 2 + 2 + 1 + 1 + 1)
        // icc off and forward drop: nothing to relax first, so the order is
        // links, names, ports, allow_src (relaxing), the allow-list flag, then
        // macs, containers, published, the default bridge's network record and the config.
        XCTAssertEqual(
            changes.map(\.kind).uniqued(),
            [
                .links, .names, .ports, .allowSources, .extInterfaces, .macs, .containers,
                .published, .networks, .config,
            ])
        XCTAssertTrue(changes.allSatisfy { if case .upsert = $0 { true } else { false } })
        guard case .upsert(.config(let config)) = changes.last else { return XCTFail() }
        XCTAssertEqual(config.generation, 1)
        assertReaches(desired, from: .empty)
    }

    func testRelaxingFlagsGoFirst() {
        var policy = Sample.policy
        policy.icc = true
        policy.forwardPolicy = .accept
        policy.extInterfaces = []  // no allow-list narrowing
        let changes = MapState.empty.changes(to: compile(policy))
        guard case .upsert(.config(let early)) = changes.first else { return XCTFail("\(changes)") }
        XCTAssertEqual(early.flags, [.icc, .forwardAccept], "only the relaxing flags, on the old record")
        XCTAssertEqual(early.bridgeNetmask, .any)
        XCTAssertEqual(early.generation, 0)
        assertReaches(compile(policy), from: .empty)
    }

    func testForwardAcceptWaitsWhenAllowListsNarrow() {
        var policy = Sample.policy
        policy.forwardPolicy = .accept  // and eth0 gets an allow-list that did not exist before
        let changes = MapState.empty.changes(to: compile(policy))
        let configs = changes.compactMap { change -> ConfigRecord? in
            if case .upsert(.config(let c)) = change { return c } else { return nil }
        }
        XCTAssertEqual(configs.count, 2, "forward accept comes after the allow-list is enforced")
        XCTAssertEqual(configs[0].flags, [.forwardAccept])
        let flagIndex = changes.firstIndex(
            of: .upsert(.extInterface(ifindex: 2, ExtInterfaceRecord(flags: .allowList))))!
        let acceptIndex = changes.firstIndex(of: .upsert(.config(configs[0])))!
        let firstContainer = changes.firstIndex { $0.kind == .containers }!
        XCTAssertLessThan(flagIndex, acceptIndex)
        XCTAssertLessThan(acceptIndex, firstContainer)
        XCTAssertTrue(Reconciler.allowListsNarrow(from: .empty, to: compile(policy)))
        XCTAssertFalse(Reconciler.allowListsNarrow(from: compile(policy), to: compile(policy)))

        var wider = policy
        wider.extInterfaces[0].allowSources.append(IPv4CIDR("10.0.0.0/8")!)
        XCTAssertFalse(Reconciler.allowListsNarrow(from: compile(policy), to: compile(wider)))
        var covered = policy
        covered.extInterfaces[0].allowSources = [IPv4CIDR("198.51.100.0/24")!, IPv4CIDR("203.0.0.0/16")!]
        XCTAssertFalse(Reconciler.allowListsNarrow(from: compile(policy), to: compile(covered)))
        XCTAssertTrue(Reconciler.allowListsNarrow(from: compile(covered), to: compile(policy)))
    }

    func testOneLinkMoreIsOnlyThatLink() {
        var before = Sample.policy
        before.containers.append(Sample.db)
        var after = before
        after.links.append(Link(parent: "web", child: "db"))
        let changes = compile(before).changes(to: compile(after))
        XCTAssertEqual(changes.map(\.kind), [.links, .links, .links, .links, .config])
        XCTAssertEqual(changes.count, 5)
        assertReaches(compile(after), from: compile(before))
        // And back: the rules go after the config write.
        let back = compile(after).changes(to: compile(before))
        XCTAssertEqual(back.map(\.kind), [.config, .links, .links, .links, .links])
        XCTAssertTrue(back.dropFirst().allSatisfy { if case .delete = $0 { true } else { false } })
    }

    func testContainerChangesAddress() {
        var after = Sample.policy
        after.containers[0].ip = IPv4Address(172, 17, 0, 20)
        let before = compile(Sample.policy)
        let desired = compile(after)
        let changes = before.changes(to: desired)
        let old = Sample.web.ip
        let new = IPv4Address(172, 17, 0, 20)
        // The MAC now points at the new address (a replace, not delete+insert).
        XCTAssertTrue(changes.contains(.upsert(.mac(Sample.web.mac, new))))
        XCTAssertFalse(changes.contains(.delete(.mac(Sample.web.mac))))
        XCTAssertTrue(changes.contains(.delete(.container(old))))
        XCTAssertTrue(changes.contains(.upsert(.container(new, ContainerRecord(portIfindex: 10, mac: Sample.web.mac)))))
        XCTAssertTrue(
            changes.contains(
                .upsert(
                    .published(
                        PublishedKey(hostPort: 8080, proto: 6),
                        PublishedTarget(containerAddress: new, containerPort: 80)))))
        XCTAssertEqual(changes.filter { $0.kind == .links }.count, 16, "8 new rules, 8 old rules")
        assertReaches(desired, from: before)
    }

    func testExtInterfaceLosesItsAllowList() {
        var after = Sample.policy
        after.extInterfaces[0].allowSources = []
        let changes = compile(Sample.policy).changes(to: compile(after))
        XCTAssertEqual(
            changes,
            [
                .upsert(.extInterface(ifindex: 2, ExtInterfaceRecord())),
                .delete(.allowSource(AllowSource(ifindex: 2, prefix: IPv4CIDR("198.51.100.2/32")!))),
                .delete(.allowSource(AllowSource(ifindex: 2, prefix: IPv4CIDR("203.0.113.0/24")!))),
                .upsert(.config(withGeneration(compile(after).config, 1))),
            ])
    }

    /// IPv6 entries go with the IPv4 ones: admitted before an interface
    /// starts enforcing its list, removed only after it stopped; an interface
    /// with only IPv6 entries enforces its list (no IPv4 source is admitted).
    func testIPv6AllowListEntriesFollowTheSameOrder() {
        var before = Sample.policy
        before.extInterfaces[0].allowSources = []
        var after = before
        after.extInterfaces[0].allowSourcesIPv6 = [IPv6CIDR("2001:db8::/32")!]
        let entry = AllowSource6(ifindex: 2, prefix: IPv6CIDR("2001:db8::/32")!)
        XCTAssertEqual(compile(after).extInterfaces[2], ExtInterfaceRecord(flags: .allowList))
        XCTAssertEqual(
            compile(before).changes(to: compile(after)),
            [
                .upsert(.allowSource6(entry)),
                .upsert(.extInterface(ifindex: 2, ExtInterfaceRecord(flags: .allowList))),
                .upsert(.config(withGeneration(compile(after).config, 1))),
            ])
        XCTAssertEqual(
            compile(after).changes(to: compile(before)),
            [
                .upsert(.extInterface(ifindex: 2, ExtInterfaceRecord())), .delete(.allowSource6(entry)),
                .upsert(.config(withGeneration(compile(before).config, 1))),
            ])
        assertReaches(compile(after), from: compile(before))
        // The C key round-trips.
        XCTAssertEqual(AllowSource6(entry.cKey), entry)
        XCTAssertEqual(entry.cKey.prefixlen, 32 + 32)
    }

    func withGeneration(_ config: ConfigRecord, _ generation: UInt32) -> ConfigRecord {
        var config = config
        config.generation = generation
        return config
    }

    func testGenerationWraps() {
        var current = compile(Sample.policy)
        current.config.generation = .max
        var policy = Sample.policy
        policy.icc = true
        guard case .upsert(.config(let final)) = current.changes(to: compile(policy)).last else { return XCTFail() }
        XCTAssertEqual(final.generation, 0)
    }

    // MARK: Reading back

    func testStateReadsBackFromRawMaps() throws {
        var policy = Sample.policy
        policy.containers.append(Sample.db)
        policy.links.append(Link(parent: "web", child: "db"))
        let maps = InMemoryMaps(state: compile(policy))
        XCTAssertEqual(try MapState(reading: maps), compile(policy))
    }

    func testStateFromCStructs() throws {
        let state = compile(Sample.policy)
        let rebuilt = try MapState(
            config: state.config.cValue,
            containers: state.containers.map { ($0.key.networkOrder, $0.value.cValue) },
            macs: state.macs.map { ($0.key.cMacKey, $0.value.networkOrder) },
            links: state.links.map(\.cKey),
            published: state.published.map { ($0.key.cKey, $0.value.cValue) },
            extInterfaces: state.extInterfaces.map { ($0.key, $0.value.cValue) },
            allowSources: state.allowSources.map(\.cKey),
            names: state.names.map { ($0.key.networkOrder, ContainerNameRecord.cValue($0.value)) },
            ports: state.ports.map { ($0.key, $0.value.cValue) },
            networks: state.networks.map { (UInt32($0.key), $0.value.cValue) })
        XCTAssertEqual(rebuilt, state)
    }

    func testForeignEntriesAreDeleted() {
        // Something bpfnet did not write (an unknown direction): reconciling removes it.
        var current = compile(Sample.policy)
        let foreign = LinkRule(
            source: Sample.web.ip, destination: Sample.client.ip, port: 1, proto: 6,
            direction: LinkDirection(rawValue: 9))
        current.links.insert(foreign)
        XCTAssertEqual(current.changes(to: compile(Sample.policy)).last, .delete(.link(foreign)))
    }

    func testInMemoryMapsLogsAndChecks() throws {
        var maps = InMemoryMaps()
        var seen: [MapChange] = []
        maps.afterEachWrite = { _, change in seen.append(change) }
        let changes = MapState.empty.changes(to: compile(Sample.policy))
        try maps.apply(changes)
        XCTAssertEqual(maps.log, changes)
        XCTAssertEqual(seen, changes)
        struct Stop: Error {}
        maps.afterEachWrite = { _, _ in throw Stop() }
        XCTAssertThrowsError(try maps.apply(changes))
        XCTAssertEqual(maps.log.count, changes.count + 1, "stops at the first failing write")
    }

    // MARK: The no-drop property

    /// Scenarios that an operator actually goes through.
    func testNoAllowedPacketIsDroppedDuringTypicalChanges() {
        let base = Sample.policy
        var withDB = base
        withDB.containers.append(Sample.db)
        var iccOn = withDB
        iccOn.icc = true
        var linked = withDB
        linked.links.append(Link(parent: "web", child: "db"))
        var moved = linked
        moved.containers[2].ip = IPv4Address(172, 17, 0, 40)
        var published = withDB
        published.containers[2].published = [PublishedPort(hostPort: 5432, containerPort: 5432)]
        published.extInterfaces[0].allowSources.append(IPv4CIDR("198.51.100.77/32")!)
        var accept = published
        accept.forwardPolicy = .accept
        var openIf = accept
        openIf.extInterfaces[0].allowSources = []
        var twoIfs = openIf
        twoIfs.extInterfaces.append(ExternalInterface(name: "eth1", allowSources: [IPv4CIDR("10.0.0.0/8")!]))
        var noIfs = twoIfs
        noIfs.extInterfaces = []
        var exposedMore = linked
        exposedMore.containers[2].exposed.append(PortSpec(6000, .udp))

        let policies = [base, withDB, iccOn, linked, moved, published, accept, openIf, twoIfs, noIfs, exposedMore]
        let states = [MapState.empty] + policies.map(compile)
        // Each step forth and back, and every state loaded from scratch and unloaded.
        var transitions: [(Int, Int)] = []
        for i in 1..<states.count {
            transitions += [(i - 1, i), (i, i - 1)]
            if i > 1 { transitions += [(0, i), (i, 0)] }
        }
        transitions += [(2, 10), (10, 2), (3, 7), (7, 3)]
        for (i, j) in transitions {
            let report = TransitionCheck.run(from: states[i], to: states[j])
            XCTAssertEqual(report.drops.count, 0, "state \(i) → \(j): \(report.drops.prefix(3))")
            XCTAssertEqual(report.mismatches.count, 0, "state \(i) → \(j): \(report.mismatches.prefix(3))")
            XCTAssertEqual(report.openings.count, 0, "state \(i) → \(j): \(report.openings.prefix(3))")
        }
    }

    /// Random policies over a pool of containers on one bridge.
    func testNoAllowedPacketIsDroppedDuringRandomChanges() {
        var random = Xoshiro256StarStar(seed: 0xB9F)
        var previous = MapState.empty
        for round in 0..<10 {
            let next = compile(randomPolicy(&random))
            let report = TransitionCheck.run(from: previous, to: next)
            XCTAssertEqual(report.drops.count, 0, "round \(round): \(report.drops.prefix(3))")
            XCTAssertEqual(report.mismatches.count, 0, "round \(round): \(report.mismatches.prefix(3))")
            XCTAssertEqual(report.openings.count, 0, "round \(round): \(report.openings.prefix(3))")
            previous = next
        }
    }

    func randomPolicy(_ random: inout Xoshiro256StarStar) -> Policy {
        let names = ["a", "b", "c", "d", "e"]
        var containers: [Container] = []
        for (index, name) in names.enumerated() where random.chance(75) {
            let ip = IPv4Address(172, 17, 0, UInt8(random.int(2...12)))
            guard !containers.contains(where: { $0.ip == ip }) else { continue }
            var exposed: [PortSpec] = []
            for _ in 0..<random.int(0...2) {
                exposed.append(PortSpec(random.pick([80, 53, 5432, 9000]), random.pick([.tcp, .udp, .sctp])))
            }
            var published: [PublishedPort] = []
            if random.chance(30) {
                published.append(
                    PublishedPort(
                        hostIP: random.chance(50) ? nil : IPv4Address(203, 0, 113, 1),
                        hostPort: UInt16(8000 + index), containerPort: 80))
            }
            containers.append(
                Container(
                    name: name, ip: ip, mac: MACAddress(dockerStyleFor: ip),
                    port: ["vethweb", "vethclient", "vethdb", "vethother", "lo"][index],
                    exposed: exposed, published: published))
        }
        var links: [Link] = []
        for parent in containers {
            for child in containers where parent.name != child.name && random.chance(30) {
                links.append(Link(parent: parent.name, child: child.name))
            }
        }
        let prefixes = ["198.51.100.0/24", "198.51.100.2/32", "203.0.113.0/25", "10.0.0.0/8"].compactMap(IPv4CIDR.init)
        var exts: [ExternalInterface] = []
        for name in ["eth0", "eth1"] where random.chance(70) {
            exts.append(ExternalInterface(name: name, allowSources: prefixes.filter { _ in random.chance(35) }))
        }
        return Policy(
            icc: random.chance(40), forwardPolicy: random.chance(50) ? .accept : .drop,
            extInterfaces: exts, containers: containers, links: links)
    }

    /// Why the order is not simply "all upserts, then all deletes": with that
    /// order these changes drop packets both policies allow.
    func testPlainUpsertsThenDeletesWouldDropPackets() {
        // icc switched on together with a new container: IPv6 to its MAC is
        // allowed before (unknown MAC) and after (icc), but not once the MAC
        // is known and icc still off.
        var iccOn = Sample.policy
        iccOn.icc = true
        iccOn.containers.append(Sample.db)
        XCTAssertFalse(naiveViolations(Sample.policy, iccOn).isEmpty)
        XCTAssertTrue(TransitionCheck.violations(from: compile(Sample.policy), to: compile(iccOn)).isEmpty)

        // A port published and its source admitted in one change.
        var publish = Sample.policy
        publish.containers[1].published = [PublishedPort(hostPort: 9000, containerPort: 9000)]
        publish.extInterfaces[0].allowSources.append(IPv4CIDR("198.51.100.200/32")!)
        XCTAssertFalse(naiveViolations(Sample.policy, publish).isEmpty)
        XCTAssertTrue(TransitionCheck.violations(from: compile(Sample.policy), to: compile(publish)).isEmpty)

        // And the reverse: unpublished while its source loses admission.
        XCTAssertFalse(naiveViolations(publish, Sample.policy).isEmpty)
        XCTAssertTrue(TransitionCheck.violations(from: compile(publish), to: compile(Sample.policy)).isEmpty)
    }

    /// Upserts (links, macs, containers, names, published, allow_src,
    /// ext_ifs, config), then deletes (ext_ifs, allow_src, published, names,
    /// containers, macs, links).
    func naiveViolations(_ from: Policy, _ to: Policy) -> [TransitionViolation] {
        let current = compile(from)
        let desired = compile(to)
        let changes = current.changes(to: desired)
        let upsertOrder: [MapKind] = [
            .links, .macs, .containers, .names, .ports, .published, .allowSources, .extInterfaces, .subnets,
            .networks, .config,
        ]
        let deleteOrder: [MapKind] = [
            .extInterfaces, .allowSources, .published, .names, .ports, .containers, .macs, .links, .subnets, .networks,
        ]
        var upserts: [MapChange] = []
        var deletes: [MapChange] = []
        for change in changes {
            switch change {
            case .upsert(.config(let c)) where !c.samePolicy(as: desired.config): continue  // no early relaxation
            case .upsert(.network(let id, let n)) where desired.networks[id] != n: continue
            case .upsert: upserts.append(change)
            case .delete: deletes.append(change)
            }
        }
        upserts.sort { upsertOrder.firstIndex(of: $0.kind)! < upsertOrder.firstIndex(of: $1.kind)! }
        deletes.sort { deleteOrder.firstIndex(of: $0.kind)! < deleteOrder.firstIndex(of: $1.kind)! }
        return TransitionCheck.violations(from: current, to: desired, changes: upserts + deletes)
    }
}

extension Array where Element: Equatable {
    /// Consecutive duplicates removed.
    func uniqued() -> [Element] {
        var result: [Element] = []
        for element in self where result.last != element { result.append(element) }
        return result
    }
}
