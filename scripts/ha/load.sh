# shellcheck shell=bash
# The steady client load (examples/ha_load.rs) in the client namespace (sourced).
# Needs HA_LOAD_BIN. Results land in the associative array R.
# Beside it, an `etcdctl watch` (Go clientv3, which resumes watches itself)
# through the same target must see a key written before the scenario and one
# written after it, each exactly once: R[etcdctl_watch] is ok or the reason.

declare -gA R

ectl() { ha_in c "$ETCDCTL_BIN" --endpoints="$1:23790" "${@:2}"; }
# seen_once LOG KEY: KEY is a line of LOG exactly once.
seen_once() { [ "$(grep -cx "$2" "$1")" = 1 ]; }

# load_start NAME TARGET: starts the driver against TARGET:23790, waits for READY.
load_start() {
  rm -f "$HA_WORK/$1.stop"
  LOAD_TARGET=$2
  ha_bg "ectl-$1" c "$ETCDCTL_BIN" --endpoints="$2:23790" watch --prefix "/ha/ectl/$1/"
  ha_wait "etcdctl watch through $2" 20 ectl_probe "$1" "$2"
  ha_wait "etcdctl put through $2" 20 ectl_put_once "$1" before "$2"
  ha_bg "$1" c "$HA_LOAD_BIN" "$2:23790" "$HA_WORK/$1.stop" 20
  ha_wait "load $1 READY" 30 grep -q '^READY' "$HA_WORK/$1.log" || { cat "$HA_WORK/$1.log"; return 1; }
}

# load_stop NAME: stops the driver and reads its RESULT line into R.
load_stop() {
  touch "$HA_WORK/$1.stop"
  wait "$(ha_pid "$1")" || true
  local ew=ok
  ha_wait "etcdctl put through $LOAD_TARGET" 20 ectl_put_once "$1" after "$LOAD_TARGET"
  ha_wait "etcdctl watch to see the key written after $1" 20 grep -qx "/ha/ectl/$1/after" "$HA_WORK/ectl-$1.log" ||
    ew="missed the key written after"
  kill "$(ha_pid "ectl-$1")" 2>/dev/null; wait "$(ha_pid "ectl-$1")" 2>/dev/null || true
  for k in before after; do
    seen_once "$HA_WORK/ectl-$1.log" "/ha/ectl/$1/$k" || ew="/ha/ectl/$1/$k seen $(grep -cx "/ha/ectl/$1/$k" "$HA_WORK/ectl-$1.log") times"
  done
  local line kv
  line=$(grep '^RESULT' "$HA_WORK/$1.log") || { echo "load $1 printed no RESULT:"; tail -20 "$HA_WORK/$1.log"; return 1; }
  R=()
  for kv in ${line#RESULT }; do R[${kv%%=*}]=${kv#*=}; done
  R[etcdctl_watch]=$ew
}

# ectl_probe NAME TARGET: writes /ha/ectl/NAME/probe; true once the etcdctl watch printed it.
ectl_probe() {
  ectl "$2" --command-timeout=2s put "/ha/ectl/$1/probe" x >/dev/null 2>&1 || true
  sleep 0.2
  grep -qx "/ha/ectl/$1/probe" "$HA_WORK/ectl-$1.log"
}

# ectl_put_once NAME KEY TARGET: writes /ha/ectl/NAME/KEY through TARGET (retried until it succeeds).
ectl_put_once() { ectl "$3" --command-timeout=2s put "/ha/ectl/$1/$2" x >/dev/null; }

now_ms() { date +%s%3N; }
