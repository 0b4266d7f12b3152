#!/usr/bin/env bash
# Local mode start-up: `sinewctl up examples/demo` to the first successful request through the
# mesh (loadgen-0 → frontend → reviews + ratings, all over mTLS), and each proxy's start to
# ready (`proxyReadyMs` in run.json: spawn → /healthz/ready 200, which needs a certificate from
# the control plane and the first config). Binaries are built first; the timing starts after.
#
#   bench/local-up.sh [ROUNDS]        # as root; default 10 rounds; release build
#
# Honours CARGO_TARGET_DIR. Prints one line per round and a summary table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-10}
[[ $(id -u) -eq 0 ]] || { echo "needs root" >&2; exit 1; }
cargo build -q --release -j 2 -p sinewctl -p sinew-proxy -p sinew-control-plane -p sinew-demo --bins
target=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
ctl=("$target/release/sinewctl" --name bench --state-root /run/sinew-bench)
work=$(mktemp -d); trap '"${ctl[@]}" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
for r in $(seq "$rounds"); do
  t0=$(now_ms)
  "${ctl[@]}" up examples/demo >"$work/up.$r.log" 2>&1 &
  up=$!
  until "${ctl[@]}" exec -n demo loadgen-0 -- curl -sf -o /dev/null --max-time 2 http://frontend.demo/ 2>/dev/null; do
    kill -0 "$up" 2>/dev/null || { cat "$work/up.$r.log"; exit 1; }
    sleep 0.01
  done
  t1=$(now_ms)
  # Every proxy's readiness time is recorded once all pods run.
  until grep -q '"ready": true' /run/sinew-bench/bench/run.json 2>/dev/null; do sleep 0.05; done
  cp "/run/sinew-bench/bench/run.json" "$work/run.$r.json"
  "${ctl[@]}" down >/dev/null
  wait "$up" || true
  ready=$(/usr/bin/python3 -c 'import json,sys; print(" ".join(str(p["proxyReadyMs"]) for p in json.load(open(sys.argv[1]))["pods"]))' "$work/run.$r.json")
  running=$(grep -o 'running, [0-9.]* s' "$work/up.$r.log" | grep -o '[0-9.]*')
  echo "round $r: up → first request $((t1 - t0)) ms; all pods running at ${running} s; proxy start → ready (ms): $ready"
  echo "$((t1 - t0))" >>"$work/first"
  tr ' ' '\n' <<<"$ready" >>"$work/ready"
done
/usr/bin/python3 - "$work/first" "$work/ready" <<'PY'
import statistics, sys
first = [int(x) for x in open(sys.argv[1]).read().split()]
ready = [int(x) for x in open(sys.argv[2]).read().split()]
def row(name, xs, target):
    xs = sorted(xs)
    p = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    print(f"| {name} | {len(xs)} | {statistics.median(xs):.0f} | {p(0.9)} | {xs[-1]} | {target} |")
print("| measure | samples | p50 ms | p90 ms | max ms | target |")
print("|---|---:|---:|---:|---:|---|")
row("`sinewctl up examples/demo` → first successful request", first, "< 5000 ms")
row("proxy start → ready (control plane up)", ready, "< 100 ms")
PY
