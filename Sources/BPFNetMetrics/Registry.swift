// SPDX-License-Identifier: Apache-2.0
//
// Registering a metric by its full name and help text (swift-prometheus asks
// for a descriptor; bpfnet's names already carry their unit).

import Prometheus

extension PrometheusCollectorRegistry {
    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    func counter(_ name: String, labels: [(String, String)] = [], help: String) -> Counter {
        makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
    }

    func gauge(_ name: String, labels: [(String, String)] = [], help: String) -> Gauge {
        makeGauge(descriptor: Self.descriptor(name, help), labels: labels)
    }

    func durationHistogram(_ name: String, buckets: [Duration], help: String) -> DurationHistogram {
        makeDurationHistogram(descriptor: Self.descriptor(name, help), buckets: buckets)
    }
}

extension Gauge {
    func set(_ value: Int) { set(to: Double(value)) }
    func set(_ flag: Bool) { set(to: flag ? 1 : 0) }
}

extension Counter {
    func increment(by value: UInt64) { increment(by: Int64(clamping: value)) }
}
