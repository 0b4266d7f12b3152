#!/usr/bin/env bash
# bench/soak.sh — a long steady load through a sinew-proxy pair, with both proxies' memory
# sampled every minute: does anything grow?
#
#   oha -(HTTP/1.1, fixed rate)-> sinew-proxy client -(mTLS)-> sinew-proxy server (STRICT, an
#   AuthorizationPolicy admitting the client's identity) -> nginx (1 KiB)
#
# Prerequisite (once per machine, as root): ../shared/bench/setup.sh (oha, nginx).
#
# Usage (from the repo root):
#   bench/soak.sh                       # 30 minutes at 1000 requests/s
#   SOAK_MINUTES=2 SOAK_RATE=500 bench/soak.sh
#
# Prints one line per minute (requests so far, each proxy's RSS and peak RSS in KiB), then oha's
# status-code counts and the verdict: every request answered 200, and each proxy's RSS at the end
# against its RSS after the first minute (warm-up: pools, TLS sessions, metric series). Exits 1 if
# a request failed. Results stay in $SOAK_WORK (default /var/tmp/sinew-soak/<UTC time>).
#
# Knobs: SINEW_PROXY_BIN (default: a release build of this checkout), SOAK_MINUTES (30),
# SOAK_RATE (1000), SOAK_CONNECTIONS (16).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MINUTES=${SOAK_MINUTES:-30}
RATE=${SOAK_RATE:-1000}
CONNS=${SOAK_CONNECTIONS:-16}
WORK=${SOAK_WORK:-/var/tmp/sinew-soak/$(date -u +%Y%m%dT%H%M%SZ)}
BENCH_DIR=${SINEW_BENCH_DIR:-$REPO/../shared/bench}
mkdir -p "$WORK/www" "$WORK/nginx-tmp" "$WORK/certs"

for tool in oha nginx envsubst openssl; do
  command -v "$tool" >/dev/null || { echo "$tool not found (run ../shared/bench/setup.sh)" >&2; exit 1; }
done

if [[ -z ${SINEW_PROXY_BIN:-} ]]; then
  (cd "$REPO" && cargo build --release -j 2 -p sinew-proxy --bin sinew-proxy)
  target=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  SINEW_PROXY_BIN=$target/release/sinew-proxy
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UPSTREAM_PORT=$(free_port) CLIENT_PORT=$(free_port) SERVER_PORT=$(free_port)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$BENCH_DIR/gen-certs.sh" "$WORK/certs" >/dev/null
head -c 1024 /dev/zero | tr '\0' x >"$WORK/www/1k"
export UPSTREAM_PORT RUN_DIR=$WORK NGINX_WORKERS=1
# shellcheck disable=SC2016  # envsubst's variable list, not ours
envsubst '${UPSTREAM_PORT} ${NGINX_WORKERS} ${RUN_DIR}' <"$BENCH_DIR/configs/nginx.conf.tmpl" >"$WORK/nginx.conf"
nginx -p "$WORK" -c "$WORK/nginx.conf" >"$WORK/nginx.log" 2>&1 &
pids+=($!)

cat >"$WORK/server.yaml" <<EOF
tls: {certFile: "$WORK/certs/server.crt", keyFile: "$WORK/certs/server.key", trustBundleFile: "$WORK/certs/ca.crt"}
inboundMode: STRICT
listeners:
  - {name: inbound, address: "127.0.0.1:$SERVER_PORT", direction: INBOUND, appPort: $UPSTREAM_PORT}
admin: {adminAddress: "127.0.0.1:0", healthAddress: "127.0.0.1:0", metricsAddress: "127.0.0.1:0"}
authorization:
  policies:
    - name: default/allow-client
      rules: [{from: [{principals: ["cluster.local/ns/default/sa/client"]}], to: [{methods: [GET]}]}]
EOF
cat >"$WORK/client.yaml" <<EOF
tls: {certFile: "$WORK/certs/client.crt", keyFile: "$WORK/certs/client.key", trustBundleFile: "$WORK/certs/ca.crt"}
listeners:
  - {name: outbound, address: "127.0.0.1:$CLIENT_PORT", direction: OUTBOUND, fixedDestination: "127.0.0.1:$UPSTREAM_PORT"}
services:
  - name: server.default.svc.cluster.local
    addresses: ["127.0.0.1:$UPSTREAM_PORT"]
    protocol: HTTP1
    endpoints:
      - {address: "127.0.0.1:$UPSTREAM_PORT", identity: "spiffe://cluster.local/ns/default/sa/server", meshPort: $SERVER_PORT}
admin: {adminAddress: "127.0.0.1:0", healthAddress: "127.0.0.1:0", metricsAddress: "127.0.0.1:0"}
EOF
"$SINEW_PROXY_BIN" run --config "$WORK/server.yaml" --log-level warn >"$WORK/server.log" 2>&1 &
server=$!
pids+=("$server")
"$SINEW_PROXY_BIN" run --config "$WORK/client.yaml" --log-level warn >"$WORK/client.log" 2>&1 &
client=$!
pids+=("$client")

# Both proxies answer before the clock starts (bounded: 20 s).
for _ in $(seq 200); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$CLIENT_PORT/1k" 2>/dev/null; then break; fi
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$CLIENT_PORT/1k" || { echo "the pair never answered; see $WORK/*.log" >&2; exit 1; }

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
oha --no-tui --output-format json -q "$RATE" -c "$CONNS" -z "${MINUTES}m" "http://127.0.0.1:$CLIENT_PORT/1k" >"$WORK/oha.json" 2>"$WORK/oha.err" &
load=$!
pids+=("$load")

echo "soak: $MINUTES min at $RATE req/s over $CONNS connections; results in $WORK"
printf '%-7s %12s %12s %12s %12s\n' minute client_rss client_hwm server_rss server_hwm | tee "$WORK/rss.tsv"
for m in $(seq 0 "$MINUTES"); do
  (( m == 0 )) || sleep 60
  printf '%-7s %12s %12s %12s %12s\n' "$m" "$(kib "$client" VmRSS)" "$(kib "$client" VmHWM)" \
    "$(kib "$server" VmRSS)" "$(kib "$server" VmHWM)" | tee -a "$WORK/rss.tsv"
done
wait "$load" || true

python3 - "$WORK/oha.json" "$WORK/rss.tsv" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
codes = summary.get("statusCodeDistribution", {})
errors = summary.get("errorDistribution", {})
total = sum(codes.values()) + sum(errors.values())
print(f"requests: {total}, status codes: {codes}, errors: {errors or 'none'}, "
      f"rps: {summary['summary'].get('requestsPerSec', 0):.1f}")
rows = [l.split() for l in open(sys.argv[2]).read().splitlines()[1:]]
first, last = rows[1], rows[-1]
for i, side in ((1, "client"), (3, "server")):
    print(f"{side}: RSS after 1 min {int(first[i])} KiB, at the end {int(last[i])} KiB "
          f"({int(last[i]) - int(first[i]):+d} KiB), peak {int(last[i + 1])} KiB")
ok = not errors and set(codes) <= {"200"}
print("verdict:", "every request answered 200" if ok else "FAILED requests")
sys.exit(0 if ok else 1)
PY
