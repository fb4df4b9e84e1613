#!/usr/bin/env bash
# Replays the story etcd-grpc-proxy exists for, on loopback:
#   a 3-member cluster, the proxy started with ONLY the first member's endpoint,
#   `etcdctl member add m4` + m4 started with --initial-cluster-state existing,
#   the proxy sends calls to m4 with no restart, then m1 dies and clients
#   pointed at the proxy keep working.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY_BIN=${PROXY_BIN:-target/release/etcd-grpc-proxy}
PROXY=127.0.0.1:23790
export ETCDCTL_API=3
WORK=$(mktemp -d /tmp/etcd-grpc-proxy-demo.XXXXXX)
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in 12379 12380 22379 22380 32379 32380 42379 42380 23790; do
  port_free "$p" || { echo "port $p is in use; stop whatever listens there and retry"; exit 1; }
done

client_port() { case $1 in m1) echo 12379;; m2) echo 22379;; m3) echo 32379;; m4) echo 42379;; esac; }
peer_port() { echo $(( $(client_port "$1") + 1 )); }

start_member() { # name initial-cluster state
  local n=$1 c p
  c=$(client_port "$n"); p=$(peer_port "$n")
  etcd --name "$n" --data-dir "$WORK/$n" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$2" --initial-cluster-state "$3" --initial-cluster-token demo \
    >"$WORK/$n.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$n=$!"
}

wait_healthy() { # name
  local c; c=$(client_port "$1")
  for _ in $(seq 1 100); do
    etcdctl --endpoints="127.0.0.1:$c" endpoint health >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "member $1 did not become healthy; see $WORK/$1.log"; exit 1
}

ranges_on() { # name: KV Range calls the member has served
  curl -s "http://127.0.0.1:$(client_port "$1")/metrics" |
    awk '/^grpc_server_started_total/ && /grpc_method="Range"/ {s+=$2} END {print s+0}'
}

say "starting a 3-member etcd cluster on loopback"
INITIAL="m1=http://127.0.0.1:12380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
for m in m1 m2 m3; do start_member "$m" "$INITIAL" new; done
for m in m1 m2 m3; do wait_healthy "$m"; done
etcdctl --endpoints=127.0.0.1:12379 member list

say "starting etcd-grpc-proxy with ONLY m1 as endpoint (--endpoints=127.0.0.1:12379)"
"$PROXY_BIN" start --endpoints=127.0.0.1:12379 --listen-addr=$PROXY --endpoints-auto-sync-interval=2s \
  >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do etcdctl --endpoints=$PROXY endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
etcdctl --endpoints=$PROXY put greeting "hello through the proxy"
etcdctl --endpoints=$PROXY get greeting

say "operator: etcdctl member add m4, then start m4 with --initial-cluster-state existing"
until etcdctl --endpoints=127.0.0.1:12379 member add m4 --peer-urls=http://127.0.0.1:42380 >"$WORK/add.out" 2>&1; do
  grep -q "unhealthy cluster" "$WORK/add.out" || { cat "$WORK/add.out"; exit 1; }
  sleep 0.5
done
cat "$WORK/add.out"
start_member m4 "$INITIAL,m4=http://127.0.0.1:42380" existing
wait_healthy m4

say "no restart, no config change: waiting for the proxy to send calls to m4"
before=$(ranges_on m4)
for i in $(seq 1 60); do
  for _ in 1 2 3 4 5; do etcdctl --endpoints=$PROXY get greeting >/dev/null; done
  now=$(ranges_on m4)
  if [ "$now" -gt "$before" ]; then echo "m4 has served $((now - before)) Range calls sent to the proxy"; break; fi
  [ "$i" = 60 ] && { echo "m4 never received traffic"; cat "$WORK/proxy.log"; exit 1; }
  sleep 0.5
done
grep "membership changed" "$WORK/proxy.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g'

say "m1, the only endpoint the proxy was given, dies (kill -9)"
kill -9 "$PID_m1"
# If m1 led the cluster, etcd itself refuses writes until the survivors elect
# a new leader (direct clients too): wait for that, as any client must.
for i in $(seq 1 60); do
  etcdctl --endpoints=127.0.0.1:22379,127.0.0.1:32379 endpoint status 2>/dev/null | grep -q ", true, " && break
  sleep 0.5
done
ok=0; fail=0
for i in $(seq 1 50); do
  if etcdctl --endpoints=$PROXY put "key$i" "v$i" >/dev/null 2>&1 && etcdctl --endpoints=$PROXY get "key$i" >/dev/null 2>&1; then
    ok=$((ok + 1))
  else
    fail=$((fail + 1))
  fi
done
echo "after m1's death: $ok of 50 put+get pairs through the proxy succeeded, $fail failed"
etcdctl --endpoints=$PROXY endpoint status
[ "$fail" = 0 ] || { echo "some calls failed; see $WORK/proxy.log"; exit 1; }

say "done: clients pointed only at $PROXY never noticed the member add or m1's death"
