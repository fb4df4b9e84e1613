# The HA scenarios (sourced after net.sh, nodes.sh, load.sh). Each runs under
# the steady load of one client, then appends a row to $HA_WORK/rows.md
# and checks correctness: no watch gap or duplicate, the watch caught up,
# the lease (and its key) kept alive throughout.

HA_FAILURES=0

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# check COND MESSAGE: counts a failed correctness check.
check() {
  if eval "$1"; then return 0; fi
  echo "FAIL: $2" >&2
  HA_FAILURES=$((HA_FAILURES + 1))
}

# row NAME TARGET NOTE: reports the driver's figures and checks them.
row() {
  local name=$1 note=$3
  printf '| %s | %s | %s | %s ms | %s gaps, %s dups, %s re-opens, longest pause %s ms; etcdctl watch %s | longest %s ms, %s re-opens, lease kept: %s | %s |\n' \
    "$name" "${R[calls_ok]}" "${R[calls_failed]}" "${R[max_gap_ms]}" \
    "${R[watch_gaps]}" "${R[watch_dups]}" "${R[watch_restarts]}" "${R[watch_max_gap_ms]}" "${R[etcdctl_watch]}" \
    "${R[ka_max_gap_ms]}" "${R[ka_restarts]}" "${R[lease_key_kept]}" "$note" | tee -a "$HA_WORK/rows.md"
  check '[ "${R[watch_gaps]}" = 0 ] && [ "${R[watch_dups]}" = 0 ]' "$name: watch gap or duplicate"
  check '[ "${R[watch_caught_up]}" = true ]' "$name: watch did not catch up with the last Put"
  check '[ "${R[lease_lost]}" = false ] && [ "${R[lease_key_kept]}" = true ] && [ "${R[lease_ttl_left]}" -gt 0 ]' \
    "$name: the lease or its key was lost"
  check '[ "${R[calls_ok]}" -gt 0 ]' "$name: no successful call"
  check '[ "${R[etcdctl_watch]}" = ok ]' "$name: etcdctl watch ${R[etcdctl_watch]}"
}

# spot TARGET NAME: etcdctl, from the client namespace, writes and reads back through TARGET.
spot() {
  local out
  ha_in c "$ETCDCTL_BIN" --endpoints="$1:23790" put "/ha/spot/$2" ok >/dev/null &&
    out=$(ha_in c "$ETCDCTL_BIN" --endpoints="$1:23790" get --print-value-only "/ha/spot/$2")
  check '[ "$out" = ok ]' "$2: etcdctl put/get through $1 failed"
}

# drain N: SIGTERM proxy N, wait for its exit (status must be 0); DRAIN_MS is the time taken.
drain() {
  local t0 rc=0; t0=$(now_ms)
  kill -TERM "$(ha_pid "p$1")"
  wait "$(ha_pid "p$1")" || rc=$?
  check "[ $rc = 0 ]" "proxy $1 exited $rc after SIGTERM"
  DRAIN_MS=$(($(now_ms) - t0))
}

# restart N: starts proxy N again and waits until it is ready.
restart() {
  ha_proxy "$1"
  ha_wait "proxy $1 ready" 30 proxy_ready "$1"
}

# restart_behind_vip N: restarts proxy N and waits until its keepalived is BACKUP again.
restart_behind_vip() {
  local l; l=$(ka_lines "$1")
  restart "$1"
  ha_wait "keepalived $1 back in BACKUP" 30 ka_state_after "$1" "$l" BACKUP
}

# restart_behind_lb N: restarts proxy N and waits until HAProxy has it UP again.
restart_behind_lb() {
  local l; l=$(hap_lines)
  restart "$1"
  ha_wait "HAProxy has proxy$1 UP" 30 hap_state_after "$1" "$l" UP
}

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

# recovered T0: how long after T0 (epoch ms) calls came back, from the driver's longest gap.
recovered() {
  local end=${R[max_gap_end_ms]} gap=${R[max_gap_ms]}
  if [ $((end - gap)) -le "$1" ] && [ "$end" -ge "$1" ]; then
    echo "calls back $((end - $1)) ms after the kill"
  else
    echo "no gap between calls longer than ${gap} ms"
  fi
}

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

spot_quiet() { ha_in c "$ETCDCTL_BIN" --endpoints="$1:23790" --command-timeout=1s get /ha/none; }

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

# members_seen K: every proxy has K members in its member set.
members_seen() {
  local n; for n in 1 2 3; do [ "$(ha_metric "$n" etcd_grpc_proxy_backend_members)" = "$1" ] || return 1; done
}
# in_rotation K: every proxy has K members in rotation.
in_rotation() {
  local n; for n in 1 2 3; do [ "$(ha_metric "$n" etcd_grpc_proxy_backend_members_in_rotation)" = "$1" ] || return 1; done
}

scenario_member_change() {
  say "4. etcd member add m4, then m1 (the leader) dies, behind the VIP"
  load_start members "$HA_VIP"
  local out t0 learned rot
  until out=$(ha_in e1 "$ETCDCTL_BIN" --endpoints=10.78.0.11:2379 member add m4 --peer-urls=http://10.78.0.14:2380 2>&1); do
    grep -q "unhealthy cluster" <<<"$out" || { echo "$out"; check false "member add failed"; break; }
    sleep 0.5
  done
  echo "$out" | head -1
  t0=$(now_ms)
  ha_member 4 "$HA_CLUSTER,m4=http://10.78.0.14:2380" existing
  ha_wait "m4 healthy" 60 member_healthy 4
  ha_wait "every proxy to see 4 members" 30 members_seen 4; learned=$(($(now_ms) - t0))
  # The worst case: m1 is also the leader, so its death needs an election.
  local m1_id; m1_id=$(ha_in e1 "$ETCDCTL_BIN" --endpoints=10.78.0.11:2379 endpoint status -w json |
    grep -o '"member_id":[0-9]*' | head -1 | cut -d: -f2)
  ha_in e1 "$ETCDCTL_BIN" --endpoints=10.78.0.11:2379,10.78.0.12:2379,10.78.0.13:2379,10.78.0.14:2379 \
    move-leader "$(printf '%x' "$m1_id")" >/dev/null 2>&1 || true
  echo "every proxy follows m4 ${learned} ms after it started; m1 leads; kill -9 m1"
  t0=$(now_ms)
  kill -KILL "$(ha_pid m1)"; wait "$(ha_pid m1)" 2>/dev/null || true
  ha_wait "every proxy to take m1 out of rotation" 30 in_rotation 3; rot=$(($(now_ms) - t0))
  ha_wait "a call through the VIP" 20 spot_quiet "$HA_VIP"
  load_stop members
  row "4. VIP: member add m4 + kill -9 m1 (the leader)" "$HA_VIP" "proxies saw m4 ${learned} ms after start; m1 out of rotation after ${rot} ms"
  spot "$HA_VIP" members
  ha_in c "$ETCDCTL_BIN" --endpoints="$HA_VIP:23790" member list
}
