#!/usr/bin/env bash
# Instructions per call, counted by callgrind: a figure that holds on a
# noisy shared machine, where CPU seconds move by 10-20% from run to run.
#
# One etcd member (3.4 from Debian unless INSTR_ETCD names another binary);
# the release proxy runs under `valgrind --tool=callgrind` with collection
# off; examples/call_count.rs warms up, turns collection on, makes COUNT
# calls, and turns it off. Instructions counted / COUNT = instructions per
# call, for the whole proxy process (all threads: runtime, h2, upstream).
#
# Writes bench/results/instructions/latest.md and appends one row to
# history.md (INSTR_LABEL says what changed). INSTR_COUNT (default 2000),
# INSTR_KINDS (default "get-cached get put txn"), INSTR_BIN (proxy binary),
# INSTR_KEEP=1 keeps the callgrind files (for callgrind_annotate),
# INSTR_ARGS extra proxy flags (to price a feature: run with and without).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CARGO="${CARGO:-cargo}"
count="${INSTR_COUNT:-2000}"
kinds="${INSTR_KINDS:-get-cached get put txn}"
label="${INSTR_LABEL:-}"
etcd="${INSTR_ETCD:-$(command -v etcd || true)}"
bin="${INSTR_BIN:-$root/target/release/etcd-grpc-proxy}"
out="$root/bench/results/instructions"
for tool in valgrind callgrind_control; do
  command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install valgrind (make deps does)" >&2; exit 1; }
done
[ -x "$etcd" ] || { echo "etcd missing: apt-get install etcd-server (make deps does)" >&2; exit 1; }
[ -x "$bin" ] || $CARGO build --release
$CARGO build --release --example call_count 2>/dev/null || $CARGO build --release --example call_count
driver="$root/target/release/examples/call_count"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ "${INSTR_KEEP:-0}" = 1 ] || rm -rf "$dir"; }
trap cleanup EXIT

cport=$(free_port); pport=$(free_port)
"$etcd" --name m1 --data-dir "$dir/m1" \
  --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
  --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
  --initial-cluster "m1=http://127.0.0.1:$pport" >"$dir/etcd.log" 2>&1 &
pids+=($!)

# One proxy per kind, each started fresh, so one kind's cache or leases
# never shape another's count.
declare -A per_call
for kind in $kinds; do
  port=$(free_port); mport=$(free_port)
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.$kind" \
    "$bin" start --endpoints "127.0.0.1:$cport" --listen-addr "127.0.0.1:$port" \
    --metrics-addr "http://127.0.0.1:$mport" ${INSTR_ARGS:-} >"$dir/proxy.$kind.log" 2>&1 &
  vpid=$!
  pids+=("$vpid")
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  CALLS_BEFORE="callgrind_control -i on $vpid >/dev/null" \
    CALLS_AFTER="callgrind_control -i off $vpid >/dev/null && callgrind_control -d $vpid >/dev/null" \
    "$driver" "127.0.0.1:$port" "$kind" "$count" >/dev/null
  # The dump is written asynchronously: wait for the file.
  for _ in $(seq 1 600); do
    f=$(ls "$dir"/callgrind."$kind".* 2>/dev/null | head -1 || true)
    [ -n "$f" ] && grep -q '^totals:' "$f" && break
    sleep 0.1
  done
  ir=$(awk '/^totals:/ {print $2}' "$f")
  per_call[$kind]=$((ir / count))
  echo "$kind: $ir instructions / $count calls = ${per_call[$kind]} per call" >&2
  kill "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
done

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain -- src Cargo.toml 2>/dev/null | head -1)"
[ -n "$dirty" ] && commit="$commit+"
when="$(date -u '+%Y-%m-%d %H:%M UTC')"
row="| $when | $commit | ${label:--}${INSTR_ARGS:+ (\`${INSTR_ARGS}\`)} |"
for kind in get-cached get put txn; do row="$row ${per_call[$kind]:--} |"; done
mkdir -p "$out"
if [ ! -f "$out/history.md" ]; then
  {
    echo "# Instructions per call, run by run"
    echo
    echo "callgrind, whole proxy process, $count calls, 8 in flight on one connection, one etcd member; see scripts/bench-instructions.sh."
    echo
    echo "| when | commit | change | cache-hit Get | linearizable Get | Put | Txn |"
    echo "|---|---|---|---:|---:|---:|---:|"
  } >"$out/history.md"
fi
echo "$row" >>"$out/history.md"
{
  echo "## Instructions per call (callgrind)"
  echo
  echo "$when, commit $commit, $("$etcd" --version | awk '/etcd Version/ {print "etcd " $3}'), $count calls of each kind, 8 in flight on one HTTP/2 connection, through a fresh proxy per kind. Counts the whole proxy process; history: history.md."
  echo
  echo "| call | instructions per call |"
  echo "|---|---:|"
  echo "| cache-hit Get (serializable) | ${per_call[get-cached]:--} |"
  echo "| linearizable Get (read barrier, then cache or member) | ${per_call[get]:--} |"
  echo "| Put | ${per_call[put]:--} |"
  echo "| Txn (create-if-absent shape) | ${per_call[txn]:--} |"
} >"$out/latest.md"
cat "$out/latest.md"
if [ "${INSTR_KEEP:-0}" = 1 ]; then echo "callgrind files kept in $dir" >&2; fi
