#!/usr/bin/env bash
# High availability as operators deploy it (issue 14), on network namespaces:
# a 3-member etcd 3.6 cluster, three proxies started with the systemd unit's
# command line, keepalived (deploy/keepalived/keepalived.conf) on every proxy
# node holding the virtual IP 10.78.0.100, HAProxy (deploy/haproxy/haproxy.cfg)
# in front of the same proxies, and clients in a namespace of their own that
# talk only to the VIP or HAProxy: the Rust etcd-client (examples/ha_load.rs)
# under steady load, and etcdctl.
#
# Scenarios: drain and kill -9 of the VIP holder / of the busy HAProxy
# backend, rolling restarts, and `member add` + death of the first member.
# Correctness is asserted (no watch gap or duplicate, lease kept alive, exit
# status 0 after a drain); the figures are written to $HA_RESULTS
# (bench/results/ha/latest.md) and reported, not asserted.
#
# Needs root (ip netns), keepalived, haproxy, curl. PROXY_BIN and HA_LOAD_BIN
# skip the cargo builds. HA_TIMEOUT (s, default 420) bounds the whole run.
# HA_SCENARIOS picks scenarios (default: all, in order); HA_KEEP=1 keeps the
# logs in target/ha-logs/ even when the run passes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CARGO="${CARGO:-cargo}"
HA_RESULTS="${HA_RESULTS:-$root/bench/results/ha/latest.md}"
HA_TIMEOUT="${HA_TIMEOUT:-420}"

[ "$(id -u)" = 0 ] || { echo "test-ha: needs root (it creates network namespaces): run it as root or with sudo" >&2; exit 1; }
for t in ip:iproute2 keepalived:keepalived haproxy:haproxy curl:curl promtool:prometheus python3:python3; do
  command -v "${t%%:*}" >/dev/null 2>&1 ||
    { echo "test-ha: ${t%%:*} not found: apt-get install -y ${t#*:} (or make deps-ha)" >&2; exit 1; }
done

source scripts/ha/net.sh
source scripts/ha/nodes.sh
source scripts/ha/load.sh
source scripts/ha/scenarios-common.sh
source scripts/ha/scenarios-vip.sh
source scripts/ha/scenarios-lb.sh
source scripts/ha/scenarios-members.sh

bin="$(scripts/etcd-bin.sh 3.6)"
ETCD_BIN="$bin/etcd" ETCDCTL_BIN="$bin/etcdctl"
if [ -z "${PROXY_BIN:-}" ]; then
  $CARGO build --bin etcd-grpc-proxy
  PROXY_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/etcd-grpc-proxy"
fi
if [ -z "${HA_LOAD_BIN:-}" ]; then
  $CARGO build --example ha_load
  HA_LOAD_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/examples/ha_load"
fi

HA_WORK=$(mktemp -d /tmp/egpha.XXXXXX)
started=$SECONDS

# Everything we started dies with us; logs are kept under target/ha-logs on failure.
cleanup() {
  local rc=$?
  set +e
  trap - EXIT TERM INT
  exec 3>&2 2>/dev/null # no "Killed" job notices for the processes ended below
  [ -n "${watchdog:-}" ] && { pkill -P "$watchdog" 2>/dev/null; kill "$watchdog" 2>/dev/null; }
  for f in "$HA_WORK"/*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  ha_net_down
  { wait; } 2>/dev/null
  if [ "$rc" != 0 ] || [ -n "${HA_KEEP:-}" ]; then
    rm -rf "$root/target/ha-logs"; mkdir -p "$root/target/ha-logs"
    cp "$HA_WORK"/*.log "$HA_WORK"/*.cfg "$root/target/ha-logs/" 2>/dev/null || true
    [ "$rc" != 0 ] && echo "test-ha: FAILED (rc $rc); logs in target/ha-logs/" >&3
  fi
  rm -rf "$HA_WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "test-ha: interrupted" >&2; exit 1' TERM INT
( exec 4>&2 2>/dev/null; sleep "$HA_TIMEOUT"; echo "test-ha: global timeout (${HA_TIMEOUT}s) reached" >&4; kill -TERM $$ ) &
watchdog=$!

say "network: bridge $HA_BRIDGE, namespaces egpha-{e1..e4,p1..p3,lb,c} on 10.78.0.0/24"
ha_net_down
ha_net_up

say "etcd 3.6 members m1..m3 (10.78.0.11..13)"
for n in 1 2 3; do ha_member "$n" "$HA_CLUSTER" new; done
for n in 1 2 3; do ha_wait "m$n healthy" 60 member_healthy "$n"; done

say "proxies p1..p3 (10.78.0.21..23), command line from deploy/systemd/etcd-grpc-proxy.service:"
ha_proxy_cmd 1; echo
for n in 1 2 3; do ha_proxy "$n"; done
for n in 1 2 3; do ha_wait "proxy $n ready" 30 proxy_ready "$n"; done

say "keepalived on every proxy node (VIP $HA_VIP), HAProxy on $HA_LB"
for n in 1 2 3; do ha_keepalived "$n"; done
ha_haproxy
ha_wait "a VIP holder" 30 ha_vip_holder
echo "VIP on proxy $(ha_vip_holder)"
ha_wait "etcdctl through the VIP" 20 spot_quiet "$HA_VIP"
ha_wait "etcdctl through HAProxy" 20 spot_quiet "$HA_LB"
check 'docker_healthcheck 1' "the Dockerfile's HEALTHCHECK fails on a ready proxy"

: >"$HA_WORK/rows.md"
for s in ${HA_SCENARIOS:-vip_drain vip_kill vip_rolling lb_drain lb_kill lb_rolling member_change}; do
  "scenario_$s"
done

say "observability: deploy/grafana and deploy/prometheus against a proxy's /metrics"
ha_in p2 curl -fsS -m 2 http://127.0.0.1:9379/metrics >"$HA_WORK/metrics.txt"
check 'scripts/check-observability.sh "$HA_WORK/metrics.txt"' "dashboard or alert rules"

wall=$((SECONDS - started))
mkdir -p "$(dirname "$HA_RESULTS")"
{
  echo "# High availability figures (scripts/test-ha.sh)"
  echo
  echo "$(date -u +%Y-%m-%d) on $(nproc) cores, $(uname -r); etcd $("$ETCD_BIN" --version | awk '/etcd Version/ {print $3}'),"
  echo "$(keepalived --version 2>&1 | head -1), $(haproxy -v | head -1 | awk '{print $1, $3}'); proxy $PROXY_BIN."
  echo "One etcd-client client (one HTTP/2 connection) per scenario: a Put or a Get every 20 ms (2 s deadline),"
  echo "one watch on all keys re-opened from its last revision, one lease (TTL 6 s) kept alive every second."
  echo "Whole run: ${wall} s."
  echo
  echo "| Scenario | Calls OK | Failed calls | Longest gap without a successful call | Watch | Keep-alive | Notes |"
  echo "|---|---|---|---|---|---|---|"
  cat "$HA_WORK/rows.md"
} >"$HA_RESULTS"
say "results ($HA_RESULTS)"
cat "$HA_RESULTS"
if [ "$HA_FAILURES" != 0 ]; then echo "test-ha: $HA_FAILURES correctness check(s) failed" >&2; exit 1; fi
echo "test-ha: ok (${wall} s)"
