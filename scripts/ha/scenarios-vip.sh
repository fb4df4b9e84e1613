# shellcheck shell=bash
# Scenarios with keepalived's VIP on the proxies (sourced after scenarios-common.sh).

vip_moved_from() { local h; h=$(ha_vip_holder) && [ "$h" != "$1" ]; }

scenario_vip_drain() {
  say "1. keepalived VIP: SIGTERM (drain) of the proxy holding the VIP"
  load_start vip-drain "$HA_VIP"
  local h t0 moved ms; h=$(ha_vip_holder); t0=$(now_ms)
  echo "VIP on proxy $h; SIGTERM"
  kill -TERM "$(ha_pid "p$h")"
  ha_wait "VIP to move" 20 vip_moved_from "$h"; moved=$(($(now_ms) - t0))
  check '! docker_healthcheck "$h"' "the Dockerfile's HEALTHCHECK passes on a draining proxy"
  local rc=0; wait "$(ha_pid "p$h")" || rc=$?; ms=$(($(now_ms) - t0))
  check "[ $rc = 0 ]" "proxy $h exited $rc after SIGTERM"
  echo "VIP moved to proxy $(ha_vip_holder) after ${moved} ms; proxy $h exited $rc after ${ms} ms"
  restart_behind_vip "$h"
  load_stop vip-drain
  row "1. VIP: drain of the VIP holder" "$HA_VIP" "VIP moved after ${moved} ms"
  spot "$HA_VIP" vip-drain
}

scenario_vip_kill() {
  say "2. keepalived VIP: kill -9 of the proxy holding the VIP"
  load_start vip-kill "$HA_VIP"
  local h t0 moved; h=$(ha_vip_holder); t0=$(now_ms)
  echo "VIP on proxy $h; kill -9"
  kill -KILL "$(ha_pid "p$h")"; wait "$(ha_pid "p$h")" 2>/dev/null || true
  ha_wait "VIP to move" 20 vip_moved_from "$h"; moved=$(($(now_ms) - t0))
  echo "VIP moved to proxy $(ha_vip_holder) after ${moved} ms"
  # Leave the load running on the new holder a moment before the killed node returns.
  ha_wait "a call through the new holder" 20 spot_quiet "$HA_VIP"
  restart_behind_vip "$h"
  load_stop vip-kill
  row "2. VIP: kill -9 of the VIP holder" "$HA_VIP" "VIP moved after ${moved} ms; $(recovered "$t0")"
  spot "$HA_VIP" vip-kill
}

scenario_vip_rolling() {
  say "3. keepalived VIP: rolling restart of all proxies with drain"
  load_start vip-rolling "$HA_VIP"
  local n ms notes=()
  for n in 1 2 3; do
    echo "proxy $n (VIP on $(ha_vip_holder)): SIGTERM, wait, start"
    local l; l=$(ka_lines "$n")
    drain "$n"; notes+=("p$n drained in ${DRAIN_MS} ms")
    restart "$n"
    ha_wait "keepalived $n back in BACKUP" 30 ka_state_after "$n" "$l" BACKUP
  done
  load_stop vip-rolling
  row "3. VIP: rolling restart (drain)" "$HA_VIP" "$(IFS=';'; echo "${notes[*]}")"
  spot "$HA_VIP" vip-rolling
}

