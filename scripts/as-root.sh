#!/usr/bin/env bash
# Sourced first, before any `cd`, by the scripts that need root (apt-get,
# network namespaces, eBPF): scripts/demo.sh, scripts/test.sh,
# scripts/soak.sh and scripts/setup.sh. As root they go on, without sudo (a root shell in a
# container often has none). Otherwise the script runs again through sudo when
# there is one, with this PATH (sudo's secure_path would lose a Swift toolchain
# on it) and the BPFNET_* variables; else it stops, saying how to run it.
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        as_root_env=("PATH=$PATH")
        while IFS= read -r as_root_name; do
            as_root_env+=("$as_root_name=${!as_root_name}")
        done < <(compgen -e | grep '^BPFNET_' || true)
        echo "$(basename "$0"): not root; running it again with sudo" >&2
        exec sudo -- env "${as_root_env[@]}" bash "$0" "$@"
    fi
    echo "$(basename "$0"): run as root (apt-get, network namespaces and eBPF need it); there is no sudo here" >&2
    exit 2
fi
