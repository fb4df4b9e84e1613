# shellcheck shell=bash
# What every HA scenario shares (sourced after net.sh, nodes.sh, load.sh):
# correctness checks, the report row, etcdctl spot checks, drain and restart
# of a proxy. Each scenario (scenarios-vip.sh, scenarios-lb.sh,
# scenarios-members.sh) runs under the steady load of one client, then
# appends a row to $HA_WORK/rows.md and checks correctness: no watch gap or
# duplicate, the watch caught up, the lease (and its key) kept alive.

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

# recovered T0: how long after T0 (epoch ms, taken just before the kill) calls
# came back, when the driver's longest gap began at the kill (a call may still
# succeed in the instant between T0 and the signal).
recovered() {
  local end=${R[max_gap_end_ms]} gap=${R[max_gap_ms]}
  if [ $((end - gap)) -le $(($1 + 300)) ] && [ "$end" -ge "$1" ]; then
    echo "calls back $((end - $1)) ms after the kill"
  else
    echo "no gap between calls longer than ${gap} ms"
  fi
}

# spot_quiet TARGET: a read through TARGET succeeds (for polling).
spot_quiet() { ha_in c "$ETCDCTL_BIN" --endpoints="$1:23790" --command-timeout=1s get /ha/none; }

