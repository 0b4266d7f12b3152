#!/usr/bin/env bash
# Two pods, each in its own network namespace on a bridge, each with a sinew sidecar and real
# iptables interception. Pod "a" curls the service address that pod "b" serves; the request
# crosses the mesh over mutual TLS and the app in b sees a's SPIFFE identity.
#
#   scripts/demo.sh        # as root; Ctrl-C or the end of the demo removes everything it made
#
# Addresses come from 198.18.0.0/15 (reserved for network tests); there is no default route.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $(id -u) -eq 0 ]] || { echo "demo.sh needs root (network namespaces and iptables): sudo $0" >&2; exit 1; }

need=()
for pair in iptables:iptables ip:iproute2 curl:curl /usr/bin/python3:python3 setpriv:util-linux openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build -j 2 -q -p sinew-proxy --bin sinew-proxy
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target/debug/sinew-proxy"

id=$$; net=$(( 100 + id % 150 ))
br="sinew-br-$id"; A="sinew-a-$id"; B="sinew-b-$id"
sub="198.18.$net"; vip="$sub.100"
work=$(mktemp -d /tmp/sinew-demo.XXXXXX); chmod 755 "$work"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  # Everything still running inside the pods, whoever started it.
  for ns in "$A" "$B"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; done
  sleep 0.2
  for ns in "$A" "$B"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null; done
  for ns in "$A" "$B"; do ip netns exec "$ns" "$bin" init --cleanup >/dev/null 2>&1; ip netns del "$ns" 2>/dev/null; done
  ip link del "$br" 2>/dev/null
  rm -rf "$work"
  echo "cleaned up: namespaces, bridge, veths, rules, processes"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== certificates (a throwaway mesh CA)"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/ca.key" -sha256 -days 1 -subj "/CN=sinew-demo-root" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" -out "$work/ca.crt"
for w in a b; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$w.key" 2>/dev/null
  openssl req -new -key "$work/$w.key" -subj "/O=sinew-demo" -out "$work/$w.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/%s\n' "$w" >"$work/$w.ext"
  openssl x509 -req -in "$work/$w.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 1 -extfile "$work/$w.ext" -out "$work/$w.crt" 2>/dev/null
  chmod 644 "$work/$w.key"
done

echo "== pods: $A ($sub.2) and $B ($sub.3) on bridge $br; service b at $vip:80"
ip link add "$br" type bridge && ip addr add "$sub.1/24" dev "$br" && ip link set "$br" up
i=2
for ns in "$A" "$B"; do
  ip netns add "$ns"
  ip link add "sinew-v$i-$id" type veth peer name eth0 netns "$ns"
  ip link set "sinew-v$i-$id" master "$br" up
  ip -n "$ns" addr add "$sub.$i/24" dev eth0
  ip -n "$ns" link set eth0 up; ip -n "$ns" link set lo up
  ip netns exec "$ns" "$bin" init
  i=$((i + 1))
done

cat >"$work/app.py" <<'PY'
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from pod b\nx-forwarded-client-cert: %s\n" % self.headers.get("x-forwarded-client-cert", "(none)")).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
PY
cat >"$work/a.yaml" <<YAML
tls: {certFile: $work/a.crt, keyFile: $work/a.key, trustBundleFile: $work/ca.crt}
services:
  - name: b.default.svc.cluster.local
    addresses: ["$vip:80"]
    endpoints:
      - {address: "$sub.3:8080", identity: "spiffe://cluster.local/ns/default/sa/b"}
YAML
cat >"$work/b.yaml" <<YAML
tls: {certFile: $work/b.crt, keyFile: $work/b.key, trustBundleFile: $work/ca.crt}
inboundMode: STRICT
YAML
run_as() { local ns=$1 uid=$2; shift 2; ip netns exec "$ns" setpriv --reuid "$uid" --regid "$uid" --clear-groups "$@"; }
# `exec` so the recorded pid is the process itself (ip netns exec and setpriv exec too).
spawn_as() { (exec ip netns exec "$1" setpriv --reuid "$2" --regid "$2" --clear-groups "${@:3}") & pids+=($!); }
spawn_as "$B" 65534 /usr/bin/python3 "$work/app.py"
spawn_as "$A" 1337 "$bin" run --config "$work/a.yaml" --workers 1 2>"$work/a.log"
spawn_as "$B" 1337 "$bin" run --config "$work/b.yaml" --workers 1 2>"$work/b.log"
for ns in "$A" "$B"; do
  for _ in $(seq 50); do ip netns exec "$ns" curl -fs -o /dev/null "http://127.0.0.1:15021/healthz/ready" && break; sleep 0.1; done
done
for _ in $(seq 50); do ip netns exec "$B" curl -fs -o /dev/null "http://127.0.0.1:8080/" && break; sleep 0.1; done
echo "== proxies and app ready"

echo "== curl http://$vip/ from pod a (as an app user; intercepted to the sidecar)"
run_as "$A" 65534 curl -sS --max-time 5 "http://$vip/"
echo "== plaintext straight to pod b (STRICT mode refuses it)"
run_as "$A" 1337 curl -sS --max-time 5 "http://$sub.3:8080/" || echo "(refused, as it should be)"
echo "== pod a's sidecar metrics"
ip netns exec "$A" curl -s "http://127.0.0.1:15020/metrics" | grep -E '^sinew_(requests|tcp_connections_opened)_total' | grep -v ' 0$'
