#!/usr/bin/env bash
# bench/fault.sh — faults under steady load in a local mesh, counted from the caller's side.
#
#   bench/fault.sh replica-kill        # as root
#   bench/fault.sh control-plane-down  # as root; OUTAGE_S (default 300) of control plane outage
#
# The mesh (namespace `fault`): a `client` pod, a `backend` Deployment of 3 replicas behind a
# Service, and the DestinationRule users start from (examples/traffic-policy: outlier detection
# consecutive5xxErrors 2, interval 1m, ejection 30 s); no VirtualService, so Istio's default
# retries apply. `sinew-demo load` in the client sends GETs at RATE (default 200) requests/s
# through its sidecar the whole time and prints what it saw.
#
# replica-kill: after 20 s, every process of one backend replica (app and sidecar) gets SIGKILL,
#   as a node losing a pod would; local mode restarts it about a second later (restartPolicy
#   Always). Load runs 60 s in all.
# control-plane-down: after 20 s the control plane is frozen (SIGSTOP: its connections stay open
#   and nothing answers, harsher than a clean exit, which proxies notice at once) for OUTAGE_S,
#   then resumed; load runs OUTAGE_S + 60 s. Each proxy's certificate expiry is printed before
#   and after.
#
# Prints the load's totals and exits 1 if any request failed. Bounded: the mesh is torn down on
# exit (trap), load has a fixed duration. Builds release binaries (honours CARGO_TARGET_DIR), or
# takes sinewctl, sinew-proxy, sinew-control-plane and sinew-demo from SINEW_BIN_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scenario=${1:-}
case $scenario in replica-kill|control-plane-down) ;; *) sed -n '2,6p' "$0" >&2; exit 2 ;; esac
[[ $(id -u) -eq 0 ]] || { echo "needs root" >&2; exit 1; }
RATE=${RATE:-200}
OUTAGE_S=${OUTAGE_S:-300}
if [[ -n ${SINEW_BIN_DIR:-} ]]; then
  bin_dir=$SINEW_BIN_DIR
else
  cargo build -q --release -j 2 -p sinewctl -p sinew-proxy -p sinew-control-plane -p sinew-demo --bins
  bin_dir=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)/release
fi
run=fault
ctl=("$bin_dir/sinewctl" --name "$run" --state-root /run/sinew-bench)
work=$(mktemp -d)
cp_pids=()
cleanup() {
  for p in "${cp_pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
  "${ctl[@]}" down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/mesh"
cat >"$work/mesh/mesh.yaml" <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: fault, labels: {sinew-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: fault, labels: {app: client}}
spec:
  containers:
    - name: app
      command: [sinew-demo, backend, --name, client, --listen, "0.0.0.0:8080"]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: fault}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, namespace: fault}
spec:
  replicas: 3
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      containers:
        - name: app
          command: [sinew-demo, backend, --name, backend, --listen, "0.0.0.0:8080"]
---
EOF
sed -e 's/name: example-destination/name: backend/' \
    -e 's/host: myservice.default.svc.cluster.local/host: backend.fault.svc.cluster.local/' \
    -e 's/^metadata:$/metadata:\n  namespace: fault/' \
    examples/traffic-policy/seed-destinationrule.yaml >>"$work/mesh/mesh.yaml"

"${ctl[@]}" up "$work/mesh" >"$work/up.log" 2>&1 &
up=$!
# Ready: the client reaches the backend through the mesh (bounded: 60 s).
for _ in $(seq 600); do
  "${ctl[@]}" exec -n fault client -- curl -sf -o /dev/null --max-time 2 http://backend.fault/ 2>/dev/null && break
  kill -0 "$up" 2>/dev/null || { cat "$work/up.log"; exit 1; }
  sleep 0.1
done

expiry() {  # each proxy's certificate expiry, from status
  "${ctl[@]}" status --json >"$work/status.json"
  python3 - "$work/status.json" <<'PY'
import json, sys
for p in json.load(open(sys.argv[1]))["pods"]:
    pod, proxy = p["pod"], p["proxy"] or {}
    name = pod["namespace"] + "/" + pod["name"]
    print(f"  {name}: certificate expires in {proxy.get('certificateExpiresInSecs')} s")
PY
}

case $scenario in
  replica-kill) duration=60 ;;
  control-plane-down) duration=$((OUTAGE_S + 60)); echo "before:"; expiry ;;
esac
"${ctl[@]}" exec -n fault client -- sinew-demo load --target http://backend.fault/ \
  --rps "$RATE" --duration "$duration" >"$work/load.log" 2>&1 &
load=$!
sleep 20
case $scenario in
  replica-kill)
    # The pod's sidecar and containers, as the supervisor records them (run.json).
    mapfile -t pids < <(python3 - "/run/sinew-bench/$run/run.json" <<'PY'
import json, sys
pod = next(p for p in json.load(open(sys.argv[1]))["pods"] if p["name"] == "backend-0")
for proc in [pod["proxy"], *pod["containers"]]:
    if proc and proc.get("pid"):
        print(proc["pid"])
PY
)
    echo "killing backend-0's sidecar and app (${#pids[@]} processes, SIGKILL) at t=20 s"
    kill -9 "${pids[@]}"
    ;;
  control-plane-down)
    mapfile -t cp_pids < <(ip netns pids "sinew-$run.control-plane")
    echo "freezing the control plane (${#cp_pids[@]} processes, SIGSTOP) at t=20 s for ${OUTAGE_S} s"
    kill -STOP "${cp_pids[@]}"
    sleep "$OUTAGE_S"
    kill -CONT "${cp_pids[@]}"
    echo "control plane resumed"
    ;;
esac
wait "$load" || true
grep -E '^load: ' "$work/load.log" | tail -3 || true
[[ $scenario == control-plane-down ]] && { echo "after:"; expiry; }
echo "the client's proxy (retries, ejections; none listed: none happened):"
"${ctl[@]}" exec -n fault client -- curl -sS --max-time 5 http://127.0.0.1:15020/stats/prometheus |
  grep -E '^sinew_(upstream_rq_retry|outlier_ejections)_total\{' || true
total=$(grep -E '^load: total' "$work/load.log" | tail -1)
[[ -n $total ]] || { echo "no totals from the load; its log:" >&2; cat "$work/load.log" >&2; exit 1; }
failed=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$total")
if [[ $failed == 0 ]]; then echo "verdict: zero failed requests"; else echo "verdict: $failed failed requests"; exit 1; fi
