#!/usr/bin/env bash
# Installs and builds whatever is missing so that `npm test`, `npm run demo`
# and `npm run bench` work on a fresh Debian 12 machine. Safe to run again:
# each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "ensure: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  say "berth needs root (BPF, namespaces, bpffs); run as root"
  exit 1
fi

# Debian packages: the build chain, the kernel tools the tests drive, traffic tools.
PKGS=(clang llvm libbpf-dev bpftool pkg-config cmake make g++ iproute2 iputils-ping
      iperf3 busybox-static tcpdump python3 iptables nftables sockperf conntrack docker.io chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bpffs for pinning
if ! grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
  say "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi

# JavaScript dependencies
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# Build: BPF objects + native addon (CMake, incremental) and TypeScript.
say "building"
npx --no-install cmake-js compile --out build >build.log 2>&1 || { cat build.log >&2; exit 1; }
npx --no-install tsc -p tsconfig.json
