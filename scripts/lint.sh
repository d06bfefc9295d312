#!/usr/bin/env bash
# Fails when the code is not formatted as the repository's formatter
# configurations say: the Swift against .swift-format (`swift format lint
# --strict`), the eBPF C against bpf/.clang-format (`clang-format --dry-run
# --Werror`). Every finding names the file and line. scripts/test.sh (and so
# .ci/run) runs it before building. To fix what it reports:
#
#   swift format -i -r Sources Tests Benchmarks Fuzz Plugins Package.swift
#   clang-format -i bpf/*.c bpf/include/*.h
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
for tool in swift clang-format; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "lint: $tool not found (scripts/setup.sh installs what is needed)" >&2
        exit 1
    fi
done

# Every Swift file of the package and the Benchmarks and Fuzz packages, outside build directories.
mapfile -t swift_files < <(find Sources Tests Benchmarks Fuzz Plugins -name '*.swift' -not -path '*/.build*' | sort)
swift_files+=(Package.swift)
c_files=(bpf/*.c bpf/include/*.h)

failed=0
if ! swift format lint --strict --parallel "${swift_files[@]}"; then
    echo "lint: Swift is not formatted as .swift-format says; run: swift format -i -r Sources Tests Benchmarks Fuzz Plugins Package.swift" >&2
    failed=1
fi
if ! clang-format --dry-run --Werror "${c_files[@]}"; then
    echo "lint: C is not formatted as bpf/.clang-format says; run: clang-format -i bpf/*.c bpf/include/*.h" >&2
    failed=1
fi
if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "lint: ${#swift_files[@]} Swift files and ${#c_files[@]} C files formatted as configured"
