// SPDX-License-Identifier: Apache-2.0
//
// `--svg FILE`: ns/packet against N, one line per variant, written by hand
// (no dependencies). Both axes are logarithmic: N spans 0 to 10^4 and the
// cost spans from under a microsecond (bridge, bpfnet) to most of a
// millisecond (iptables-nft at N=10000). N=0 has no place on a log axis; it
// sits one step left of the smallest N, behind an axis break. Each point
// carries its min–max whisker; each line ends in a label with its median at
// the largest N and its ratio to `bridge`, so the chart reads without the
// table.

import Foundation

public enum BenchChart {
    static let width = 1080.0
    static let height = 640.0
    static let plotLeft = 96.0
    static let plotRight = 720.0
    static let plotTop = 112.0
    static let plotBottom = 546.0

    /// Fixed colours for the known variants; others take the palette in turn.
    static let colors: [String: String] = [
        "bridge": "#4d4d4d",
        "docker-iptables-nft": "#d62728",
        "docker-iptables-legacy": "#ff7f0e",
        "bpfnet-nftables": "#9467bd",
        "bpfnet-tc": "#1f77b4",
        "bpfnet-xdp": "#2ca02c",
        "bpfnet-fastpath": "#17becf",
        "bpfnet-netfilter-nat": "#1f77b4",
        "bpfnet-ebpf-nat": "#17becf",
        "bridge-empty-tc": "#9ecae1",
        "bridge-empty-xdp": "#a1d99b",
    ]
    static let palette = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]

    public static func render(_ report: BenchReport, context: BenchContext) -> String {
        let variants = report.results.reduce(into: [String]()) { names, result in
            if !names.contains(result.variant) { names.append(result.variant) }
        }
        let linkValues = Array(Set(report.results.map(\.links))).sorted()
        let x = XAxis(values: linkValues, left: plotLeft, right: plotRight)
        let costs = report.results.flatMap { [$0.nsPerPacket.min, $0.nsPerPacket.max] }.filter { $0 > 0 && $0.isFinite }
        let y = YAxis(low: costs.min() ?? 100, high: costs.max() ?? 1000, top: plotTop, bottom: plotBottom)

        var svg = SVG(width: width, height: height)
        svg.rect(x: 0, y: 0, width: width, height: height, fill: "#ffffff")
        let ingress = context.direction == .ingress
        svg.text(
            ingress
                ? "Cost per packet to a published port as the number of published ports grows (lower is better)"
                : "Cost per packet as the number of Docker links grows (lower is better)", x: plotLeft, y: 34,
            size: 19, weight: "bold")
        let date = ISO8601DateFormatter().string(from: context.date)
        for (line, text) in [context.generatorLine, context.roundsLine, "\(context.machine); \(date)"].enumerated() {
            svg.text(text, x: plotLeft, y: 56 + Double(line) * 15, size: 11.5, fill: "#444")
        }

        // Grid and y axis (decades, with 2 and 5 in between).
        for decade in y.decades {
            for factor in [1.0, 2.0, 5.0] {
                let value = decade * factor
                guard value >= y.low * 0.999, value <= y.high * 1.001 else { continue }
                let py = y.position(value)
                svg.line(
                    x1: plotLeft, y1: py, x2: plotRight, y2: py,
                    stroke: factor == 1 ? "#cccccc" : "#eeeeee", width: 1)
                if factor == 1 || y.decades.count <= 2 {
                    svg.text(Self.axisDuration(value), x: plotLeft - 8, y: py + 4, size: 12, anchor: "end")
                }
            }
        }
        // x axis: one tick per N measured.
        for value in linkValues {
            let px = x.position(value)
            svg.line(x1: px, y1: plotTop, x2: px, y2: plotBottom, stroke: "#eeeeee", width: 1)
            svg.line(x1: px, y1: plotBottom, x2: px, y2: plotBottom + 5, stroke: "#333", width: 1)
            svg.text(Self.count(value), x: px, y: plotBottom + 20, size: 12, anchor: "middle")
        }
        svg.line(x1: plotLeft, y1: plotBottom, x2: plotRight, y2: plotBottom, stroke: "#333", width: 1.2)
        svg.line(x1: plotLeft, y1: plotTop, x2: plotLeft, y2: plotBottom, stroke: "#333", width: 1.2)
        if let breakX = x.breakPosition {
            // The axis break between N=0 and the log-scaled values.
            for offset in [-3.0, 3.0] {
                svg.line(
                    x1: breakX + offset - 4, y1: plotBottom + 6, x2: breakX + offset + 4, y2: plotBottom - 6,
                    stroke: "#333", width: 1.2)
            }
        }
        svg.text(
            ingress
                ? "published ports on the host, N (log scale; each is one `docker run -p` UDP port)"
                : "links on the host, N (log scale; each link is one Docker --link with one exposed port)",
            x: (plotLeft + plotRight) / 2, y: plotBottom + 46, size: 13, anchor: "middle")
        svg.text(
            "CPU time per packet (log scale)", x: 24, y: (plotTop + plotBottom) / 2, size: 13, anchor: "middle",
            rotate: -90)

        // One line per variant.
        var endLabels: [(y: Double, text: String, color: String)] = []
        let bridgeAtLast = linkValues.last.flatMap { report.result("bridge", links: $0) }
        for (index, variant) in variants.enumerated() {
            let color = colors[variant] ?? palette[index % palette.count]
            let points = report.results.filter { $0.variant == variant }.sorted { $0.links < $1.links }
            let coordinates = points.map { (x.position($0.links), y.position($0.nsPerPacket.median)) }
            svg.polyline(coordinates, stroke: color, width: 2.4, dash: variant == "bridge" ? "6 4" : nil)
            for (point, (px, py)) in zip(points, coordinates) {
                svg.line(
                    x1: px, y1: y.position(point.nsPerPacket.min), x2: px, y2: y.position(point.nsPerPacket.max),
                    stroke: color, width: 1.2)
                if point.isComplete {
                    svg.circle(x: px, y: py, radius: 4, fill: color, stroke: "#ffffff")
                } else {
                    // Packets went missing at this point: hollow, and said so.
                    svg.circle(x: px, y: py, radius: 5, fill: "#ffffff", stroke: color)
                    svg.text(
                        "lost \(point.sent - min(point.sent, point.delivered))", x: px + 7, y: py - 7, size: 10,
                        fill: color)
                }
            }
            if let last = points.last {
                var text = "\(variant)  \(Self.duration(last.nsPerPacket.median))"
                if variant != "bridge", bridgeAtLast != nil {
                    text += "  \(Self.ratio(last.ratioToBridge.median))× bridge"
                }
                endLabels.append((y.position(last.nsPerPacket.median), text, color))
            }
        }
        // End labels right of the plot, pushed apart where lines end close together.
        let spacing = 15.0
        var placed = endLabels.sorted { $0.y < $1.y }
        for i in placed.indices.dropFirst() where placed[i].y < placed[i - 1].y + spacing {
            placed[i].y = placed[i - 1].y + spacing
        }
        if let overflow = placed.last.map({ $0.y - (plotBottom + 20) }), overflow > 0 {
            for i in placed.indices { placed[i].y -= overflow }
        }
        let lastX = linkValues.last.map(x.position) ?? plotRight
        for label in placed {
            svg.line(
                x1: lastX + 6, y1: label.y, x2: plotRight + 10, y2: label.y, stroke: label.color, width: 0.8,
                dash: "2 2")
            svg.text(label.text, x: plotRight + 14, y: label.y + 4, size: 12, fill: label.color, weight: "bold")
        }

        // Legend: what each variant is.
        var legendY = plotTop + 4
        svg.rect(
            x: plotLeft + 10, y: legendY - 14, width: 410, height: Double(variants.count) * 17 + 10,
            fill: "#ffffff", opacity: 0.85)
        for (index, variant) in variants.enumerated() {
            let color = colors[variant] ?? palette[index % palette.count]
            svg.line(
                x1: plotLeft + 18, y1: legendY, x2: plotLeft + 42, y2: legendY, stroke: color, width: 2.4,
                dash: variant == "bridge" ? "6 4" : nil)
            let known = ingress ? BenchVariant.ingress.first { $0.name == variant } : BenchVariant.named(variant)
            let summary = known?.summary ?? ""
            svg.text("\(variant): \(summary)", x: plotLeft + 50, y: legendY + 4, size: 11)
            legendY += 17
        }
        svg.text(
            "Dots: median over rounds; whiskers: min–max. Ratios: median of per-round ratios to bridge, measured "
                + "in the same round.", x: plotLeft, y: plotBottom + 70, size: 11, fill: "#444")
        return svg.document
    }

    /// "725 ns", "9.0 µs", "744 µs", "1.2 ms".
    static func duration(_ nanoseconds: Double) -> String {
        switch nanoseconds {
        case ..<1000: String(format: "%.0f ns", nanoseconds)
        case ..<10_000: String(format: "%.1f µs", nanoseconds / 1000)
        case ..<1_000_000: String(format: "%.0f µs", nanoseconds / 1000)
        default: String(format: "%.1f ms", nanoseconds / 1_000_000)
        }
    }

    /// Axis labels: "100 ns", "1 µs", "20 µs", "1 ms".
    static func axisDuration(_ nanoseconds: Double) -> String {
        switch nanoseconds {
        case ..<1000: String(format: "%g ns", nanoseconds)
        case ..<1_000_000: String(format: "%g µs", nanoseconds / 1000)
        default: String(format: "%g ms", nanoseconds / 1_000_000)
        }
    }

    static func ratio(_ value: Double) -> String {
        value >= 10 ? String(format: "%.0f", value) : String(format: "%.2f", value)
    }

    static func count(_ value: Int) -> String {
        BenchTable.number(Double(value))
    }

    /// N on a log scale; N=0 one step left of the smallest positive N.
    struct XAxis {
        let values: [Int]
        let left: Double
        let right: Double
        let low: Double
        let high: Double
        let hasZero: Bool

        init(values: [Int], left: Double, right: Double) {
            self.values = values
            let positive = values.filter { $0 > 0 }.map(Double.init)
            hasZero = values.contains(0)
            let smallest = positive.min() ?? 1
            let largest = positive.max() ?? 1
            // Leave one step (a decade, or the sweep's own step) for N=0.
            let step = positive.count >= 2 ? max(log10(largest / smallest) / Double(positive.count - 1), 0.5) : 1
            low = hasZero ? log10(smallest) - step : log10(smallest)
            high = log10(largest)
            let margin = 28.0
            self.left = left + margin
            self.right = right - margin
        }

        func position(_ value: Int) -> Double {
            let logValue = value > 0 ? log10(Double(value)) : low
            guard high > low else { return (left + right) / 2 }
            return left + (logValue - low) / (high - low) * (right - left)
        }

        /// Halfway between N=0 and the smallest positive N.
        var breakPosition: Double? {
            guard hasZero, let smallest = values.first(where: { $0 > 0 }) else { return nil }
            return (position(0) + position(smallest)) / 2
        }
    }

    /// Cost on a log scale spanning whole decades.
    struct YAxis {
        let low: Double
        let high: Double
        let top: Double
        let bottom: Double

        init(low: Double, high: Double, top: Double, bottom: Double) {
            let lowDecade = pow(10, floor(log10(max(low, 1))))
            var highDecade = pow(10, ceil(log10(max(high, 1))))
            if highDecade <= lowDecade { highDecade = lowDecade * 10 }
            self.low = lowDecade
            self.high = highDecade
            self.top = top
            self.bottom = bottom
        }

        var decades: [Double] {
            var result: [Double] = []
            var value = low
            while value <= high * 1.001 {
                result.append(value)
                value *= 10
            }
            return result
        }

        func position(_ value: Double) -> Double {
            let clamped = min(max(value, low), high)
            return bottom - (log10(clamped) - log10(low)) / (log10(high) - log10(low)) * (bottom - top)
        }
    }
}

/// A minimal SVG writer.
struct SVG {
    let width: Double
    let height: Double
    private var body: [String] = []

    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    var document: String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(height))" \
        viewBox="0 0 \(f(width)) \(f(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
        \(body.joined(separator: "\n"))
        </svg>

        """
    }

    mutating func rect(x: Double, y: Double, width: Double, height: Double, fill: String, opacity: Double = 1) {
        body.append(
            "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(width))\" height=\"\(f(height))\" fill=\"\(fill)\""
                + (opacity < 1 ? " fill-opacity=\"\(f(opacity))\"" : "") + "/>")
    }

    mutating func line(
        x1: Double, y1: Double, x2: Double, y2: Double, stroke: String, width: Double, dash: String? = nil
    ) {
        body.append(
            "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\" stroke=\"\(stroke)\" "
                + "stroke-width=\"\(f(width))\"" + (dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + "/>")
    }

    mutating func polyline(_ points: [(Double, Double)], stroke: String, width: Double, dash: String? = nil) {
        let list = points.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " ")
        body.append(
            "<polyline points=\"\(list)\" fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"\(f(width))\" "
                + "stroke-linejoin=\"round\"" + (dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + "/>")
    }

    mutating func circle(x: Double, y: Double, radius: Double, fill: String, stroke: String) {
        body.append(
            "<circle cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"\(f(radius))\" fill=\"\(fill)\" stroke=\"\(stroke)\" "
                + "stroke-width=\"1.5\"/>")
    }

    mutating func text(
        _ content: String, x: Double, y: Double, size: Double, anchor: String = "start",
        fill: String = "#222", weight: String? = nil, rotate: Double? = nil
    ) {
        var attributes =
            "x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"\(f(size))\" fill=\"\(fill)\" text-anchor=\"\(anchor)\""
        if let weight { attributes += " font-weight=\"\(weight)\"" }
        if let rotate { attributes += " transform=\"rotate(\(f(rotate)) \(f(x)) \(f(y)))\"" }
        body.append("<text \(attributes)>\(Self.escape(content))</text>")
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    private func f(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)
    }
}
