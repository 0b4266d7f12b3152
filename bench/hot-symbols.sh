#!/usr/bin/env bash
# bench/hot-symbols.sh — the linker's symbol order for sinew-proxy: every function the proxy pair
# ran in a bench/instructions.sh run (start-up, config, handshakes, requests), so that the code a
# proxy runs sits together at the front of .text and the code it never runs (error paths, CLI
# subcommands, most of the YAML and regex machinery) sits at the back.
#
# Why: a sidecar's resident memory is mostly its own mapped binary. The kernel maps file pages
# around each page a process touches (fault-around, 64 KiB), so functions the proxy never calls
# but that lie next to ones it does are resident too. Ordered, the proxy touches fewer pages.
# proxy/build.rs passes the file to the linker (lld) for the sinew-proxy binary; symbols that no
# longer exist are ignored and new ones go after the listed ones, so a stale file costs memory,
# never correctness.
#
# Usage (from the repo root, after a release build):
#   SINEW_PROXY_BIN=target/release/sinew-proxy bench/instructions.sh            # the profile run
#   SINEW_PROXY_BIN=target/release/sinew-proxy SINEW_BENCH_POLICY=seed bench/instructions.sh
#   bench/hot-symbols.sh target/release/sinew-proxy RUN_DIR [RUN_DIR...] > proxy/hot-symbols.txt
# then rebuild. `bench/hot-symbols.sh --check BINARY` says how many listed functions a binary has.
# Symbol names carry a hash of the crate's build settings and dependencies (rustc's mangling), so
# a dependency change, a new build script or another profile renames Sinew's own functions: run
# it again after such changes and before benchmarking (the check tells).
set -euo pipefail

if [[ ${1:-} == --check ]]; then
  [[ -n ${2:-} ]] || { echo "usage: $0 --check SINEW_PROXY_BINARY" >&2; exit 2; }
  list=$(dirname "$0")/../proxy/hot-symbols.txt
  listed=$(wc -l <"$list")
  found=$(comm -12 <(sort -u "$list") <(nm --defined-only "$2" | awk '{print $3}' | sort -u) | wc -l)
  echo "$found of $listed listed functions are in $2"
  exit 0
fi

[[ $# -ge 2 ]] || { echo "usage: $0 SINEW_PROXY_BINARY RUN_DIR [RUN_DIR...]" >&2; exit 2; }
bin=$1
shift
command -v nm >/dev/null || { echo "missing nm (binutils)" >&2; exit 1; }

python3 - "$bin" "$@" <<'PY'
import glob, re, subprocess, sys
binary, run_dirs = sys.argv[1], sys.argv[2:]

# Functions callgrind saw run, by demangled name without the hash suffix.
ran = set()
for d in run_dirs:
    for path in glob.glob(f"{d}/callgrind.*"):
        names = {}
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
                if m:
                    if m.group(2):
                        names[m.group(1)] = m.group(2).strip()
                    ran.add(names.get(m.group(1)))
if not ran:
    sys.exit(f"no callgrind dumps in {run_dirs}")

def symbols(demangle):
    args = ["nm", "--defined-only"] + (["-C"] if demangle else []) + [binary]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            rows.append((parts[0], parts[2]))
    return rows

mangled = dict(symbols(False))
order, seen = [], set()
for addr, name in symbols(True):
    if re.sub(r"::h[0-9a-f]{16}$", "", name) in ran and addr in mangled:
        sym = mangled[addr]
        if sym not in seen:
            seen.add(sym)
            order.append(sym)
print("\n".join(order))
print(f"{len(order)} functions listed", file=sys.stderr)
PY
