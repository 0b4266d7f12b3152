#!/usr/bin/env bash
# bench/run-sinew.sh — run the shared sidecar-pair benchmark (../shared/bench/run.sh) with a pair of
# sinew-proxy processes as the "ours" topology, next to the Envoy pairs, in one run.
#
#   loadgen -(HTTP/1.1)-> sinew-proxy client (OUTBOUND, fixedDestination) -(mTLS)-> sinew-proxy server
#           (INBOUND, STRICT, appPort) -> nginx
#
# Prerequisite (once per machine, as root): ../shared/bench/setup.sh  (wrk, oha, nginx, Envoy, certs)
#
# Usage (from the repo root):
#   bench/run-sinew.sh --quick                                        # smoke test, ~1.5 min
#   bench/run-sinew.sh --quick --topologies direct,envoy-mtls-h2,ours # shortest smoke test
#   ROUNDS=5 bench/run-sinew.sh --topologies direct,envoy-mtls-h2,ours # the headline comparison
#   bench/run-sinew.sh                                                # all Envoy topologies, 3 rounds
# Every argument is passed through to the harness (see `bench/run-sinew.sh --help`), and so are its
# environment knobs (ROUNDS, TP_DURATION, LAT_RATE, QUIET_BUDGET_S, BENCH_WORK, ...).
#
# Results: $BENCH_WORK/runs/<UTC time>/summary.md (BENCH_WORK defaults to /var/tmp/sinew-bench), with
# results.tsv, memory.tsv, raw/ and logs/ (logs/ours-client.log, logs/ours-server.log) beside it; the
# generated proxy configs are sinew-client.yaml / sinew-server.yaml and the build is in sinew-build.txt.
# Record what matters in docs/benchmarks.md.
#
# Knobs:
#   CARGO_TARGET_DIR     respected; the release binary is found via `cargo metadata`
#   SINEW_PROXY_BIN      use this binary instead of building one
#   SINEW_BENCH_HARNESS  path of the harness (default <repo>/../shared/bench/run.sh)
#   SINEW_BENCH_WORKERS  --workers for each proxy (default 1, like the Envoys' ENVOY_CONCURRENCY=1)
#   SINEW_BENCH_LOG_LEVEL --log-level for each proxy (default warn)
#   SINEW_BENCH_POLICY   `seed`: the client's service carries the seed DestinationRule's policy
#                        (examples/traffic-policy/seed-destinationrule.yaml less
#                        maxRequestsPerConnection, as the harness's envoy-policy pair), resolved as
#                        the control plane sends it; default: none (today's config)
#   SINEW_BENCH_TRACING  a sampling percentage (e.g. `1`): both proxies trace at that rate and export
#                        their spans over OTLP/gRPC to a real receiver (sinew-otlp-receiver, built
#                        in release mode unless SINEW_OTLP_RECEIVER_BIN is set) that this script
#                        starts on 127.0.0.1:$SINEW_BENCH_OTLP_PORT (default 14317) and stops;
#                        default: unset, no tracing. Istio's standard metrics are always on.
#   SINEW_BENCH_AUTHZ    `allow`: the server proxy enforces an AuthorizationPolicy admitting the
#                        client's identity for GET (every request is checked, its path
#                        normalised); default: unset, no policy.
#
# Internal: the harness starts each proxy as `run-sinew.sh --exec-client|--exec-server`. That mode
# reads OURS_PORT OURS_SERVER_PORT UPSTREAM_PORT CERT_DIR RUN_DIR (exported by the harness), writes the
# proxy's YAML config into $RUN_DIR and execs the proxy in the foreground (the harness tracks it).
set -euo pipefail

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
WORKERS=${SINEW_BENCH_WORKERS:-1}
LOG_LEVEL=${SINEW_BENCH_LOG_LEVEL:-warn}

# ------------------------------------------------------------------ exec mode (started by the harness)
policy_yaml() {  # the client service's trafficPolicy for SINEW_BENCH_POLICY (indented for services[0])
  case ${SINEW_BENCH_POLICY:-} in
    '') ;;
    seed)
      echo '    trafficPolicy:'
      echo '      tls: {mode: ISTIO_MUTUAL}'
      echo '      connectionPool: {http1MaxPendingRequests: 100}'
      echo '      outlierDetection: {consecutive5xxErrors: 2, interval: 60s, baseEjectionTime: 30s, maxEjectionPercent: 100}'
      ;;
    *) echo "unknown SINEW_BENCH_POLICY=$SINEW_BENCH_POLICY (known: seed)" >&2; exit 2 ;;
  esac
}

authz_yaml() {  # the server's authorization for SINEW_BENCH_AUTHZ
  case ${SINEW_BENCH_AUTHZ:-} in
    '') ;;
    allow)
      echo 'authorization:'
      echo '  policies:'
      echo '    - {name: default/allow-client, rules: [{from: [{principals: ["cluster.local/ns/default/sa/client"]}], to: [{methods: [GET]}]}]}'
      ;;
    *) echo "unknown SINEW_BENCH_AUTHZ=$SINEW_BENCH_AUTHZ (known: allow)" >&2; exit 2 ;;
  esac
}

telemetry_yaml() {  # the proxies' telemetry for SINEW_BENCH_TRACING
  [[ -n ${SINEW_BENCH_TRACING:-} ]] || return 0
  echo "telemetry:"
  echo "  tracing: {otlpEndpoint: \"http://127.0.0.1:${SINEW_BENCH_OTLP_PORT:-14317}\", randomSamplingPercentage: $SINEW_BENCH_TRACING}"
}

exec_proxy() {  # exec_proxy client|server BIN
  local side=$1 bin=$2 cfg
  : "${OURS_PORT:?} ${OURS_SERVER_PORT:?} ${UPSTREAM_PORT:?} ${CERT_DIR:?} ${RUN_DIR:?}"
  cfg=$RUN_DIR/sinew-$side.yaml
  if [[ $side == client ]]; then
    cat >"$cfg" <<EOF
# generated by bench/run-sinew.sh --exec-client
tls: {certFile: "$CERT_DIR/client.crt", keyFile: "$CERT_DIR/client.key", trustBundleFile: "$CERT_DIR/ca.crt"}
listeners:
  - {name: outbound, address: "127.0.0.1:$OURS_PORT", direction: OUTBOUND, fixedDestination: "127.0.0.1:$UPSTREAM_PORT"}
services:
  - name: server.default.svc.cluster.local
    addresses: ["127.0.0.1:$UPSTREAM_PORT"]
    protocol: HTTP1
    endpoints:
      - {address: "127.0.0.1:$UPSTREAM_PORT", identity: "spiffe://cluster.local/ns/default/sa/server", meshPort: $OURS_SERVER_PORT}
$(policy_yaml)
admin: {adminAddress: "127.0.0.1:0", healthAddress: "127.0.0.1:0", metricsAddress: "127.0.0.1:0"}
$(telemetry_yaml)
EOF
  else
    cat >"$cfg" <<EOF
# generated by bench/run-sinew.sh --exec-server
tls: {certFile: "$CERT_DIR/server.crt", keyFile: "$CERT_DIR/server.key", trustBundleFile: "$CERT_DIR/ca.crt"}
inboundMode: STRICT
listeners:
  - {name: inbound, address: "127.0.0.1:$OURS_SERVER_PORT", direction: INBOUND, appPort: $UPSTREAM_PORT}
admin: {adminAddress: "127.0.0.1:0", healthAddress: "127.0.0.1:0", metricsAddress: "127.0.0.1:0"}
$(telemetry_yaml)
$(authz_yaml)
EOF
  fi
  [[ $side == client && -n ${SINEW_BENCH_BUILD_INFO:-} ]] && echo "$SINEW_BENCH_BUILD_INFO" >"$RUN_DIR/sinew-build.txt"
  exec "$bin" run --config "$cfg" --workers "$WORKERS" --log-level "$LOG_LEVEL"
}

case "${1:-}" in
  --exec-client|--exec-server)
    side=${1#--exec-}
    [[ ${2:-} == --bin && -n ${3:-} ]] || { echo "usage: $0 $1 --bin SINEW_PROXY_BINARY" >&2; exit 2; }
    exec_proxy "$side" "$3"
    ;;
  -h|--help)
    sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d'
    echo "---- harness options (passed through) ----"
    ;;
esac

# ------------------------------------------------------------------ driver
REPO=$(git -C "$(dirname "$SELF")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$SELF")/.." && pwd))
HARNESS=${SINEW_BENCH_HARNESS:-$REPO/../shared/bench/run.sh}
[[ -x $HARNESS ]] || { echo "harness not found or not executable: $HARNESS (set SINEW_BENCH_HARNESS)" >&2; exit 1; }
if [[ ${1:-} == -h || ${1:-} == --help ]]; then exec "$HARNESS" --help; fi

BENCH_WORK=${BENCH_WORK:-/var/tmp/sinew-bench}
export BENCH_WORK
mkdir -p "$BENCH_WORK/bin"

target_dir() {
  (cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
}
if [[ -n ${SINEW_PROXY_BIN:-} ]]; then
  built=$SINEW_PROXY_BIN
else
  echo "building: cargo build --release -p sinew-proxy (in $REPO)" >&2
  (cd "$REPO" && cargo build --release -p sinew-proxy)
  built=$(target_dir)/release/sinew-proxy
fi
[[ -x $built ]] || { echo "sinew-proxy binary not found at $built" >&2; exit 1; }

# Run a private copy so a concurrent rebuild cannot replace the binary under a running benchmark.
BIN=$BENCH_WORK/bin/sinew-proxy
cp "$built" "$BIN.tmp.$$" && mv -f "$BIN.tmp.$$" "$BIN"

rev=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
# Whether the binary was linked with its hot functions together (bench/hot-symbols.sh).
order=$("$REPO/bench/hot-symbols.sh" --check "$built" 2>/dev/null | cut -d' ' -f1-3 || echo "?")
sum=$(sha256sum "$BIN" | cut -c1-16)
export SINEW_BENCH_BUILD_INFO="rev=$rev binary=$built sha256=$sum workers=$WORKERS log_level=$LOG_LEVEL policy=${SINEW_BENCH_POLICY:-none} tracing=${SINEW_BENCH_TRACING:-off} symbol-order=$order"
echo "sinew-proxy: $SINEW_BENCH_BUILD_INFO" >&2

if [[ -n ${SINEW_BENCH_TRACING:-} ]]; then
  receiver=${SINEW_OTLP_RECEIVER_BIN:-}
  if [[ -z $receiver ]]; then
    (cd "$REPO" && cargo build --release -p sinew-otlp-receiver)
    receiver=$(target_dir)/release/sinew-otlp-receiver
  fi
  spans=$BENCH_WORK/otlp-spans.jsonl
  "$receiver" --listen "127.0.0.1:${SINEW_BENCH_OTLP_PORT:-14317}" >"$spans" &
  receiver_pid=$!
  trap 'kill "$receiver_pid" 2>/dev/null; echo "spans received: $(wc -l <"$spans") ($spans)" >&2' EXIT
fi

q_self=$(printf %q "$SELF"); q_bin=$(printf %q "$BIN")
"$HARNESS" --ours-name sinew \
  --ours-client "$q_self --exec-client --bin $q_bin" \
  --ours-server "$q_self --exec-server --bin $q_bin" \
  "$@"
