#!/usr/bin/env bash
# Installs what one command needs, when it is missing, then builds:
#
#   scripts/ensure.sh build   the build chain, `npm ci`, and the build (BPF objects, addon, tsc)
#   scripts/ensure.sh demo    build + what `berth demo` runs (npm run demo)
#   scripts/ensure.sh test    demo + what the tests drive (npm test)
#   scripts/ensure.sh bench   what the tests need (they include a reduced bench run) (npm run bench)
#
# Each mode installs its own list and nothing more, says what it installs (and why) before it
# does it, and skips every step whose result is already there, so it is safe to run again.
# docker.io is never installed where another Docker engine is present (a dockerd on PATH,
# or docker-ce / moby-engine installed): the Docker suites then use that engine's dockerd, or
# say that they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-build}
say() { echo "ensure: $*" >&2; }

case $mode in build|demo|test|bench) ;; *) say "unknown mode '$mode' (build, demo, test or bench)"; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then
  say "berth needs root (BPF, namespaces, bpffs); run as root"
  exit 1
fi

# Debian packages, each with what it is for. A mode needs its own list and those before it.
BUILD=(
  "clang:compiles bpf/*.bpf.c to BPF objects"
  "libbpf-dev:libbpf for the native addon, and libbpf's BPF helper headers"
  "libnl-3-dev:libnl for the native addon's rtnetlink (links, addresses, routes; the static archive goes into the prebuild)"
  "libnl-route-3-dev:libnl-route for the native addon's rtnetlink"
  "pkg-config:finds libbpf and libnl for CMake"
  "cmake:builds the native addon and the BPF objects (through cmake-js)"
  "make:the build tool CMake drives"
  "g++:compiles the native addon"
)
DEMO=(
  "iputils-ping:the demo pings between its containers"
  "busybox-static:the demo's containers run busybox httpd and wget"
)
TEST=(
  "iproute2:ip and ss, which the tests use to check what berth made (berth itself talks rtnetlink)"
  "iperf3:transfers in the daemon and bench tests"
  "python3:socket probes in the BPF and Docker tests"
  "python3-scapy:builds the IPv6 frames with long extension-header chains of the v6-mtu test"
  "procps:sysctl inside the tests' namespaces"
  "iptables:Docker's reference rules, applied by the differential suite"
  "nftables:checks that berth leaves the nft ruleset alone"
  "conntrack:flushes kernel conntrack entries between reference scenarios"
  "bpftool:attaches a cgroup hook the way another tool would, in the BPF tests"
  "sockperf:request/response figures in the reduced bench test"
  "chromium:the dashboard test renders the live page headless"
)

pkgs=("${BUILD[@]}")
case $mode in
  demo) pkgs+=("${DEMO[@]}") ;;
  test|bench) pkgs+=("${DEMO[@]}" "${TEST[@]}") ;;
esac

# Docker: the Docker suites (test) and Docker's path in the bench need a dockerd. Use one that is
# there; never put docker.io over another engine.
want_docker=0
case $mode in test|bench) want_docker=1 ;; esac
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
if [ $want_docker = 1 ]; then
  other=""
  for p in docker-ce docker-ee moby-engine docker-engine; do installed "$p" && other=$p; done
  if installed docker.io; then
    :
  elif command -v dockerd >/dev/null 2>&1; then
    say "a Docker engine is already here ($(command -v dockerd)${other:+, package $other}): not installing docker.io; the Docker suites run their own private dockerd from it"
  elif [ -n "$other" ]; then
    say "package $other is installed but has no dockerd on PATH: not installing docker.io over it; the Docker suites will be skipped"
  else
    pkgs+=("docker.io:the Docker conformance and resilience suites run a private dockerd (its system service is not started)")
  fi
fi

missing=() why=()
for entry in "${pkgs[@]}"; do
  p=${entry%%:*}
  installed "$p" || { missing+=("$p"); why+=("  $p: ${entry#*:}"); }
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing for '$mode' (apt-get, --no-install-recommends):"
  printf '%s\n' "${why[@]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # docker.io's maintainer scripts would start the system dockerd (with its own iptables rules on
  # this host) as soon as it is unpacked. The tests run their own dockerd, so the system service
  # is not started during this install (Debian's policy-rc.d mechanism); start it yourself if you
  # want it: systemctl start docker.
  held=0
  if printf '%s\n' "${missing[@]}" | grep -qx docker.io && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# written by berth scripts/ensure.sh for one apt-get run\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    held=1
  fi
  rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ $held = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || { say "apt-get install failed ($rc)"; exit $rc; }
fi

# bpffs, where berth pins its programs and maps
if ! grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
  say "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi

# JavaScript dependencies
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci (the JavaScript dependencies in package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# Build: BPF objects + native addon (CMake, incremental) and TypeScript.
say "building"
npx --no-install cmake-js compile --out build >build.log 2>&1 || { cat build.log >&2; exit 1; }
npx --no-install tsc -p tsconfig.json
