# The steady client load (examples/ha_load.rs) in the client namespace (sourced).
# Needs HA_LOAD_BIN. Results land in the associative array R.

declare -gA R

# load_start NAME TARGET: starts the driver against TARGET:23790, waits for READY.
load_start() {
  rm -f "$HA_WORK/$1.stop"
  ha_bg "$1" c "$HA_LOAD_BIN" "$2:23790" "$HA_WORK/$1.stop" 20
  ha_wait "load $1 READY" 30 grep -q '^READY' "$HA_WORK/$1.log" || { cat "$HA_WORK/$1.log"; return 1; }
}

# load_stop NAME: stops the driver and reads its RESULT line into R.
load_stop() {
  touch "$HA_WORK/$1.stop"
  wait "$(ha_pid "$1")" || true
  local line kv
  line=$(grep '^RESULT' "$HA_WORK/$1.log") || { echo "load $1 printed no RESULT:"; tail -20 "$HA_WORK/$1.log"; return 1; }
  R=()
  for kv in ${line#RESULT }; do R[${kv%%=*}]=${kv#*=}; done
}

now_ms() { date +%s%3N; }
