#!/usr/bin/env bash
# Static checks of every file in deploy/ (the HA test, scripts/test-ha.sh,
# runs the systemd unit's command line, keepalived.conf and haproxy.cfg for
# real):
#   kubernetes/*.yaml      decoded strictly into k8s.io/api types (tests/deploy, Go);
#                          probes /readyz and /livez, grace > drain, selectors match
#   systemd/*.service      systemd-analyze verify (no warning allowed) and
#                          systemd-analyze security --offline (exposure <= 2.0)
#   keepalived/*.conf      keepalived --config-test
#   haproxy/haproxy.cfg    haproxy -c
#   Dockerfile             COPY sources exist, HEALTHCHECK asks /readyz, the binary is ours
#   every --flag and ETCD_GRPC_PROXY_* variable they use is one the proxy knows
# The Grafana dashboard and alert rules are checked by scripts/check-observability.sh
# (from test-ha.sh, which has real proxies' /metrics).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CARGO="${CARGO:-cargo}"
for t in systemd-analyze:systemd keepalived:keepalived haproxy:haproxy go:golang-go; do
  command -v "${t%%:*}" >/dev/null 2>&1 ||
    { echo "test-deploy: ${t%%:*} not found: apt-get install -y ${t#*:} (or make deps-ha)" >&2; exit 1; }
done
if [ -z "${PROXY_BIN:-}" ]; then
  $CARGO build --bin etcd-grpc-proxy
  PROXY_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/etcd-grpc-proxy"
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "test-deploy: ok   $*"; }
bad() { echo "test-deploy: FAIL $*" >&2; fail=1; }

# --- Kubernetes -------------------------------------------------------------
export GOCACHE="$root/target/go/cache" GOMODCACHE="$root/target/go/mod" GOFLAGS="-modcacherw -buildvcs=false"
if (cd tests/deploy && go test -count=1 ./...); then ok "kubernetes manifests"; else bad "kubernetes manifests"; fi

# --- systemd ----------------------------------------------------------------
# PID 1 here is not systemd (a container's init), so no unit can be started;
# verify it offline with the ExecStart path pointing at the real binary.
unit=deploy/systemd/etcd-grpc-proxy.service
sed "s|/usr/local/bin/etcd-grpc-proxy|$PROXY_BIN|" "$unit" >"$tmp/etcd-grpc-proxy.service"
if out=$(systemd-analyze verify "$tmp/etcd-grpc-proxy.service" 2>&1) && [ -z "$out" ]; then
  ok "systemd-analyze verify $unit"
else
  bad "systemd-analyze verify $unit: $out"
fi
if exposure=$(systemd-analyze security --offline=yes --threshold=20 "$tmp/etcd-grpc-proxy.service" 2>&1 | grep 'Overall exposure'); then
  ok "systemd-analyze security: ${exposure#→ }"
else
  bad "systemd-analyze security $unit: exposure above 2.0"
fi

# --- keepalived, HAProxy ----------------------------------------------------
for f in deploy/keepalived/*.conf; do
  if keepalived --config-test -f "$f" 2>"$tmp/ka.err" && [ ! -s "$tmp/ka.err" ]; then ok "keepalived --config-test $f"
  else bad "keepalived --config-test $f: $(cat "$tmp/ka.err")"; fi
done
if haproxy -c -f deploy/haproxy/haproxy.cfg >"$tmp/hap.out" 2>&1; then ok "haproxy -c deploy/haproxy/haproxy.cfg"
else bad "haproxy -c: $(cat "$tmp/hap.out")"; fi

# --- Dockerfile (no Docker engine here: `docker` is only a client) ---------
df=deploy/Dockerfile
while read -r src; do
  [ -e "$src" ] || bad "$df: COPY source $src does not exist"
done < <(awk '$1 == "COPY" && $2 !~ /^--from/ {for (i = 2; i < NF; i++) print $i}' "$df")
grep -q '^HEALTHCHECK' "$df" && grep -A2 '^HEALTHCHECK' "$df" | grep -q 'GET /readyz' ||
  bad "$df: HEALTHCHECK does not GET /readyz"
grep -q -- '--bin etcd-grpc-proxy' "$df" || bad "$df: does not build the etcd-grpc-proxy binary"
ok "$df (static: COPY sources, HEALTHCHECK /readyz; the HEALTHCHECK command runs in test-ha.sh)"

# --- flags and variables ----------------------------------------------------
"$PROXY_BIN" start --help >"$tmp/help"
flags=$( { grep -ho -- '--[a-z][a-z0-9-]*=' "$unit" deploy/kubernetes/*.yaml | tr -d '='
           grep -ho 'ETCD_GRPC_PROXY_[A-Z_]*[A-Z]' "$unit" deploy/Dockerfile deploy/kubernetes/*.yaml |
             sed 's/^ETCD_GRPC_PROXY_//; s/_/-/g; s/.*/--\L&/'; } | sort -u)
for f in $flags; do
  grep -q -- "^ *\(-[a-z], \)\?${f}[ =<\[]" "$tmp/help" || bad "unknown flag or variable: $f"
done
ok "$(echo "$flags" | wc -w) flags/variables used in deploy/ are the proxy's"

[ "$fail" = 0 ] || { echo "test-deploy: FAILED" >&2; exit 1; }
echo "test-deploy: ok"
