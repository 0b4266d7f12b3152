#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what the tests need, then
# formatting, lints and every test (unit, behaviour on loopback, end-to-end in network
# namespaces). Tests that need root print "SKIPPED: ..." when run without it.
#
#   scripts/test.sh            # as root (CI), or as a user with sudo for the apt step
#
# Honours CARGO_TARGET_DIR (a build cache outside the clone) and keeps to 2 build jobs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Tools the end-to-end tests drive: iptables (interception), iproute2 (netns, veth, bridge),
# tcpdump (capture on the bridge), curl (client in a pod), python3 (test app), util-linux (setpriv),
# procps (sysctl, used by sinewctl in pods).
need=()
for pair in iptables:iptables iptables-restore:iptables ip:iproute2 tcpdump:tcpdump curl:curl \
            python3:python3 setpriv:util-linux sysctl:procps; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# As root every tool above is installed, so the network-namespace tests must run, not skip.
if [[ $(id -u) -eq 0 ]]; then export SINEW_E2E_REQUIRED=${SINEW_E2E_REQUIRED:-1}; fi
jobs=(-j "${CARGO_BUILD_JOBS:-2}")
cargo fmt --all -- --check
cargo clippy "${jobs[@]}" --workspace --all-targets -- -D warnings
# The end-to-end tests run the real binaries (sinewctl finds the others next to itself).
cargo build "${jobs[@]}" -p sinew-proxy -p sinew-control-plane -p sinewctl -p sinew-demo --bins
cargo test "${jobs[@]}" --workspace
