// SPDX-License-Identifier: Apache-2.0
//
// A full resync inspects every running container and looks up every bridge
// port. One at a time, a thousand containers take seconds; all at once, they
// queue on the daemon's socket and hold a thousand tasks. The agent keeps a
// bounded number in flight (`DockerAgent.Configuration.maxConcurrentInspects`).

extension Sequence where Element: Hashable & Sendable {
    /// Runs `transform` on each distinct element, at most `limit` at a time,
    /// started in the sequence's order: the next one as soon as one finishes.
    /// The first failure cancels what still runs and is thrown.
    ///
    /// The loop runs in the caller's isolation (the agent's actor): only the
    /// transforms run elsewhere, concurrently.
    /// - Returns: each element's result, keyed by the element.
    func concurrentMap<Value: Sendable, Failure: Error>(
        limit: Int, isolation: isolated (any Actor)? = #isolation,
        _ transform: @escaping @Sendable (Element) async throws(Failure) -> Value
    ) async throws(Failure) -> [Element: Value] {
        let outcome = await withTaskGroup(
            of: (Element, Result<Value, Failure>).self,
            returning: Result<[Element: Value], Failure>.self
        ) { group in
            var results: [Element: Value] = [:]
            var seen: Set<Element> = []
            var elements = makeIterator()
            func startNext() -> Bool {
                while let element = elements.next() {
                    guard seen.insert(element).inserted else { continue }
                    group.addTask {
                        do throws(Failure) {
                            return (element, .success(try await transform(element)))
                        } catch {
                            return (element, .failure(error))
                        }
                    }
                    return true
                }
                return false
            }
            for _ in 0..<Swift.max(1, limit) where startNext() {}
            while let (element, result) = await group.next() {
                switch result {
                case .success(let value):
                    results[element] = value
                    _ = startNext()
                case .failure(let error):
                    group.cancelAll()
                    return .failure(error)
                }
            }
            return .success(results)
        }
        return try outcome.get()
    }
}
