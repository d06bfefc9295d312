#!/usr/bin/env bash
# Sets up the machine, builds bpfnet and runs `bpfnet demo`: a demo host in
# network namespaces, bpfnet loaded on it, the reachability matrix, a short
# packet-rate comparison; everything it builds is removed at the end.
# Extra arguments go to `bpfnet demo` (e.g. --json).
set -euo pipefail
# As root, or again through sudo (scripts/as-root.sh).
source "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$(swift build --show-bin-path)/bpfnet" demo "$@"
