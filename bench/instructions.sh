#!/usr/bin/env bash
# bench/instructions.sh — CPU instructions and heap allocations per request through the Sinew pair,
# counted by valgrind (callgrind), so the number does not depend on what else the machine does.
#
#   oha -c1 -(HTTP/1.1)-> sinew-proxy client -(mTLS, HTTP/2)-> sinew-proxy server -> nginx (1 KiB)
#
# The same pair and configs as bench/run-sinew.sh (its --exec-client/--exec-server mode, so
# SINEW_BENCH_POLICY=seed works here too), each proxy run under `valgrind --tool=callgrind`.
# After a warm-up, the counters are zeroed, REQUESTS requests are sent one at a time, and the
# counters are dumped: instructions (user space only: the kernel's share is not counted) and
# malloc/calloc/realloc calls per request, per proxy, plus each proxy's top functions.
# Wall-clock benchmarks on this 2-core VM swing ±20 % with hypervisor steal; these counts repeat
# to within a fraction of a percent, so they are what before/after comparisons of the request
# path should quote.
#
# Usage (from the repo root; prerequisite as for run-sinew.sh: ../shared/bench/setup.sh once):
#   bench/instructions.sh                          # build the release binary, 2000 requests
#   SINEW_PROXY_BIN=/path/to/sinew-proxy bench/instructions.sh
#   SINEW_BENCH_POLICY=seed REQUESTS=5000 bench/instructions.sh
# Knobs: SINEW_PROXY_BIN, SINEW_BENCH_POLICY, REQUESTS (2000), WARMUP (300), BENCH_WORK
# (/var/tmp/sinew-bench), BASE_PORT (18601: uses BASE_PORT..BASE_PORT+2 on 127.0.0.1).
# Output: a summary on stdout and in $BENCH_WORK/instructions/<UTC time>/summary.md, with the
# callgrind dumps (callgrind_annotate them for more) beside it; bench/hot-symbols.sh turns those
# dumps into the linker's symbol order.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_WORK=${BENCH_WORK:-/var/tmp/sinew-bench}
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-300}
BASE_PORT=${BASE_PORT:-18601}
CERT_DIR=$BENCH_WORK/certs

for tool in valgrind callgrind_control callgrind_annotate oha nginx python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run ../shared/bench/setup.sh; valgrind: apt-get install valgrind)" >&2; exit 1; }
done
[[ -r $CERT_DIR/client.crt && -r $CERT_DIR/server.crt ]] || { echo "no bench certificates in $CERT_DIR (run ../shared/bench/setup.sh)" >&2; exit 1; }

if [[ -n ${SINEW_PROXY_BIN:-} ]]; then
  bin=$SINEW_PROXY_BIN
else
  (cd "$REPO" && cargo build --release -p sinew-proxy -j 2)
  bin=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/sinew-proxy
fi
[[ -x $bin ]] || { echo "sinew-proxy binary not found at $bin" >&2; exit 1; }

RUN_DIR=$BENCH_WORK/instructions/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR/www" "$RUN_DIR/nginx-tmp"
head -c 1024 /dev/zero | tr '\0' x >"$RUN_DIR/www/1k"
UPSTREAM_PORT=$BASE_PORT OURS_PORT=$((BASE_PORT + 1)) OURS_SERVER_PORT=$((BASE_PORT + 2))
export UPSTREAM_PORT OURS_PORT OURS_SERVER_PORT CERT_DIR RUN_DIR

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

cat >"$RUN_DIR/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $RUN_DIR/nginx.pid;
error_log $RUN_DIR/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $RUN_DIR/nginx-tmp;
    proxy_temp_path $RUN_DIR/nginx-tmp;
    fastcgi_temp_path $RUN_DIR/nginx-tmp;
    uwsgi_temp_path $RUN_DIR/nginx-tmp;
    scgi_temp_path $RUN_DIR/nginx-tmp;
    server { listen 127.0.0.1:$UPSTREAM_PORT; root $RUN_DIR/www; location / { } }
}
EOF
nginx -c "$RUN_DIR/nginx.conf" -e "$RUN_DIR/nginx-error.log" &
pids+=($!)

# run-sinew.sh's exec mode writes the proxy config and execs --bin: point it at a valgrind wrapper.
for side in server client; do
  wrapper=$RUN_DIR/under-callgrind-$side.sh
  printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%q/callgrind.%s.%%p "%s" "$@"\n' \
    "$RUN_DIR" "$side" "$bin" >"$wrapper"
  chmod +x "$wrapper"
  "$REPO/bench/run-sinew.sh" --exec-"$side" --bin "$wrapper" >"$RUN_DIR/$side.log" 2>&1 &
  pids+=($!)
done

url=http://127.0.0.1:$OURS_PORT/1k
for _ in $(seq 600); do  # up to 60 s: the proxies start slowly under valgrind
  if curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null; then break; fi
  sleep 0.1
done
curl -fsS -o /dev/null --max-time 10 "$url" || { echo "the pair does not answer; logs in $RUN_DIR" >&2; exit 1; }

oha --no-tui -n "$WARMUP" -c 1 "$url" >/dev/null
# Start-up and warm-up in their own dump (bench/hot-symbols.sh reads every dump), then count the
# measured requests alone.
callgrind_control -d >/dev/null
callgrind_control -z >/dev/null
oha --no-tui -n "$REQUESTS" -c 1 "$url" >"$RUN_DIR/oha.txt"
grep -q "\[200\] $REQUESTS responses" "$RUN_DIR/oha.txt" || { echo "not every request succeeded:" >&2; cat "$RUN_DIR/oha.txt" >&2; exit 1; }
callgrind_control -d >/dev/null

python3 - "$RUN_DIR" "$REQUESTS" "${SINEW_BENCH_POLICY:-none}" "$bin" >"$RUN_DIR/summary.md" <<'PY'
import glob, os, re, subprocess, sys
run_dir, requests, policy, binary = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ALLOC = {"malloc", "calloc", "realloc"}

def dump(side):
    # The dump after the measured requests: callgrind.<side>.<pid>.<n> (the final one at exit has no .n).
    files = [f for f in glob.glob(f"{run_dir}/callgrind.{side}.*") if re.search(r"\.\d+\.\d+$", f)]
    return max(files, key=os.path.getmtime)

def counts(path):
    names, total, allocs, cfn = {}, 0, 0, None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
            elif line.startswith("cfn="):
                m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.strip())
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                cfn = names.get(m.group(1), "")
            elif line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.strip())
                if m and m.group(2):
                    names[m.group(1)] = m.group(2)
            elif line.startswith("calls=") and cfn is not None:
                if cfn.split("'")[0] in ALLOC:
                    allocs += int(line.split("=")[1].split()[0])
                cfn = None
    return total, allocs

print(f"# Instructions per request through the Sinew pair ({requests} requests, one at a time)\n")
print(f"binary: {binary}  \npolicy: {policy}\n")
print("| proxy | instructions per request | allocations per request |")
print("|---|---:|---:|")
tops = []
for side in ("client", "server"):
    path = dump(side)
    total, allocs = counts(path)
    print(f"| {side} | {total / requests:,.0f} | {allocs / requests:.1f} |")
    top = subprocess.run(["callgrind_annotate", "--threshold=90", path], capture_output=True, text=True).stdout
    # Skip the 100 % rows (the call chain down to main that the dump boundary leaves).
    rows = [l for l in top.splitlines() if re.match(r"\s*[\d,]+ \(", l) and "(100.0%)" not in l][:25]
    tops.append((side, rows))
for side, rows in tops:
    print(f"\n## {side}: top functions (self instructions, share)\n\n```")
    print("\n".join(rows))
    print("```")
PY
cat "$RUN_DIR/summary.md"
echo "results: $RUN_DIR/summary.md" >&2
