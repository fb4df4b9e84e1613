# shellcheck shell=bash
# Starting and stopping the HA test's processes (sourced after net.sh).
# Needs HA_WORK (a scratch directory), ETCD_BIN, ETCDCTL_BIN, PROXY_BIN.
# Each process's pid is in $HA_WORK/NAME.pid, its output in $HA_WORK/NAME.log.
# The shipped files in deploy/ are used with only their addresses rewritten:
# the examples' 10.0.0.x become our 10.78.0.x.

HA_DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../deploy" && pwd)"

# ha_addresses: rewrites deploy/'s example addresses to the test's subnet.
ha_addresses() { sed 's/\b10\.0\.0\./10.78.0./g'; }

# ha_bg NAME NODE CMD...: starts CMD in NODE's namespace in the background.
ha_bg() {
  local name=$1 node=$2; shift 2
  ip netns exec "egpha-$node" "$@" >>"$HA_WORK/$name.log" 2>&1 &
  echo $! >"$HA_WORK/$name.pid"
}

ha_pid() { cat "$HA_WORK/$1.pid"; }

# ha_wait WHAT SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
ha_wait() {
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then echo "timed out after ${secs}s waiting for: $what" >&2; return 1; fi
    sleep 0.1
  done
}

# --- etcd members -----------------------------------------------------------

HA_CLUSTER="m1=http://10.78.0.11:2380,m2=http://10.78.0.12:2380,m3=http://10.78.0.13:2380"

# ha_member N INITIAL_CLUSTER STATE: starts member mN in namespace eN.
ha_member() {
  local n=$1 a; a=$(ha_addr "e$n")
  ha_bg "m$n" "e$n" "$ETCD_BIN" --name "m$n" --data-dir "$HA_WORK/m$n.data" \
    --listen-client-urls "http://$a:2379" --advertise-client-urls "http://$a:2379" \
    --listen-peer-urls "http://$a:2380" --initial-advertise-peer-urls "http://$a:2380" \
    --initial-cluster "$2" --initial-cluster-state "$3" --initial-cluster-token egpha
}

member_healthy() { ha_in "e$1" "$ETCDCTL_BIN" --endpoints="$(ha_addr "e$1"):2379" endpoint health; }

# --- proxies ----------------------------------------------------------------

# ha_proxy_cmd N: the systemd unit's ExecStart, addresses rewritten, run in pN.
ha_proxy_cmd() {
  local a; a=$(ha_addr "p$1")
  awk '/^ExecStart=/ {on=1; sub(/^ExecStart=/, "")} on {more = sub(/\\$/, ""); printf "%s ", $0; if (!more) exit}' \
    "$HA_DEPLOY/systemd/etcd-grpc-proxy.service" | ha_addresses |
    sed -e "s|/usr/local/bin/etcd-grpc-proxy|$PROXY_BIN|" -e "s|%H|$a|" -e "s|%S/etcd-grpc-proxy|$HA_WORK/p$1.data|"
}

# ha_proxy N: starts proxy N with the unit's command line.
ha_proxy() {
  local cmd; read -r -a cmd <<<"$(ha_proxy_cmd "$1")"
  ha_bg "p$1" "p$1" "${cmd[@]}"
}

proxy_ready() { ha_in "p$1" curl -fsS -m 1 -o /dev/null "http://127.0.0.1:23790/readyz"; }

# ha_metric N NAME: the sum of metric NAME (with any labels) on proxy N.
ha_metric() {
  ha_in "p$1" curl -fsS -m 1 "http://127.0.0.1:9379/metrics" |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $2} END {print s + 0}'
}

# --- keepalived -------------------------------------------------------------

# ha_keepalived N: deploy/keepalived/keepalived.conf in pN.
ha_keepalived() {
  local d="$HA_WORK/ka$1"
  mkdir -p "$d"
  ha_addresses <"$HA_DEPLOY/keepalived/keepalived.conf" >"$d/keepalived.conf"
  ha_bg "ka$1" "p$1" keepalived -n -l -D -P -f "$d/keepalived.conf" \
    -p "$d/keepalived.pid" -r "$d/vrrp.pid" -c "$d/checkers.pid"
}

# ha_vip_holder: prints the proxy number whose eth0 has the VIP (none: fails).
ha_vip_holder() {
  local n
  for n in 1 2 3; do
    ip -n "egpha-p$n" -o addr show dev eth0 | grep " $HA_VIP/" >/dev/null && { echo "$n"; return 0; }
  done
  return 1
}

# ka_state_after N LINE STATE: keepalived N logged "Entering STATE STATE" after log line LINE.
ka_state_after() { tail -n +"$(($2 + 1))" "$HA_WORK/ka$1.log" | grep "Entering $3 STATE"; }
ka_lines() { wc -l <"$HA_WORK/ka$1.log"; }

# --- HAProxy ----------------------------------------------------------------

# ha_haproxy: deploy/haproxy/haproxy.cfg in namespace lb.
ha_haproxy() {
  ha_addresses <"$HA_DEPLOY/haproxy/haproxy.cfg" >"$HA_WORK/haproxy.cfg"
  ha_bg haproxy lb haproxy -db -f "$HA_WORK/haproxy.cfg"
}

# hap_up_after N LINE: HAProxy logged proxyN UP after log line LINE.
hap_lines() { wc -l <"$HA_WORK/haproxy.log"; }
hap_state_after() { tail -n +"$(($2 + 1))" "$HA_WORK/haproxy.log" | grep "proxies/proxy$1 is $3"; }

# --- the Dockerfile's HEALTHCHECK -------------------------------------------

# docker_healthcheck N: runs the Dockerfile's HEALTHCHECK command against proxy N.
docker_healthcheck() {
  local -a cmd
  mapfile -t cmd < <(python3 -c '
import json, re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
line = next(l for l in text.splitlines() if l.startswith("HEALTHCHECK"))
print("\n".join(json.loads(line[line.index("CMD") + 3:])))' "$HA_DEPLOY/Dockerfile")
  ha_in "p$1" env ETCD_GRPC_PROXY_LISTEN_ADDR=0.0.0.0:23790 "${cmd[@]}"
}
