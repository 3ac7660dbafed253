#!/usr/bin/env bash
# Regenerates bpf/include/vmlinux.h from a kernel's BTF (default: the running
# kernel's). The file is kept in the tree so that building berth needs neither
# BTF nor bpftool nor any libc header; run this only to pick up new kernel types.
#   scripts/gen-vmlinux.sh [BTF_FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
btf=${1:-/sys/kernel/btf/vmlinux}
command -v bpftool >/dev/null || { echo "gen-vmlinux: bpftool is needed (apt-get install bpftool)" >&2; exit 1; }
[ -r "$btf" ] || { echo "gen-vmlinux: no BTF at $btf" >&2; exit 1; }
bpftool btf dump file "$btf" format c > bpf/include/vmlinux.h.part
mv bpf/include/vmlinux.h.part bpf/include/vmlinux.h
echo "gen-vmlinux: bpf/include/vmlinux.h from $btf ($(uname -r), $(wc -c < bpf/include/vmlinux.h) bytes)"
