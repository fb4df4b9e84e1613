# shellcheck shell=bash
# Scenarios behind HAProxy (sourced after scenarios-common.sh).

# lb_backend: the proxy carrying the etcd-client driver behind HAProxy: the
# one with a LeaseKeepAlive stream open (the etcdctl watch has none).
lb_backend() {
  local n
  for n in 1 2 3; do
    ha_in "p$n" curl -fsS -m 1 "http://127.0.0.1:9379/metrics" |
      awk '/^etcd_grpc_proxy_client_streams\{/ && /grpc_method="LeaseKeepAlive"/ && $2 > 0 {found = 1} END {exit !found}' &&
      { echo "$n"; return 0; }
  done
  return 1
}

scenario_lb_drain() {
  say "1b. HAProxy: SIGTERM (drain) of the backend carrying the client"
  load_start lb-drain "$HA_LB"
  local b ms; b=$(lb_backend)
  echo "client's streams on proxy $b; SIGTERM"
  drain "$b"; ms=$DRAIN_MS
  echo "proxy $b exited after ${ms} ms"
  restart_behind_lb "$b"
  load_stop lb-drain
  row "1b. HAProxy: drain of the busy backend" "$HA_LB" "backend exited after ${ms} ms"
  spot "$HA_LB" lb-drain
}

scenario_lb_kill() {
  say "2b. HAProxy: kill -9 of the backend carrying the client"
  load_start lb-kill "$HA_LB"
  local b t0 l down; b=$(lb_backend); l=$(hap_lines); t0=$(now_ms)
  echo "client's streams on proxy $b; kill -9"
  kill -KILL "$(ha_pid "p$b")"; wait "$(ha_pid "p$b")" 2>/dev/null || true
  ha_wait "HAProxy to mark proxy$b DOWN" 20 hap_state_after "$b" "$l" DOWN; down=$(($(now_ms) - t0))
  echo "HAProxy marked proxy$b DOWN after ${down} ms"
  ha_wait "a call through HAProxy" 20 spot_quiet "$HA_LB"
  restart_behind_lb "$b"
  load_stop lb-kill
  row "2b. HAProxy: kill -9 of the busy backend" "$HA_LB" "$(recovered "$t0"); HAProxy marked it DOWN after ${down} ms"
  spot "$HA_LB" lb-kill
}

scenario_lb_rolling() {
  say "3b. HAProxy: rolling restart of all proxies with drain"
  load_start lb-rolling "$HA_LB"
  local n ms notes=()
  for n in 1 2 3; do
    echo "proxy $n: SIGTERM, wait, start"
    local l; l=$(hap_lines)
    drain "$n"; notes+=("p$n drained in ${DRAIN_MS} ms")
    restart "$n"
    ha_wait "HAProxy has proxy$n UP" 30 hap_state_after "$n" "$l" UP
  done
  load_stop lb-rolling
  row "3b. HAProxy: rolling restart (drain)" "$HA_LB" "$(IFS=';'; echo "${notes[*]}")"
  spot "$HA_LB" lb-rolling
}

