#!/usr/bin/env bash
# The hostile-client suite's long version (`make bench`): every attack of
# tests/it/hostile.rs, HOSTILE_SCALE times longer (default 3), against our
# proxy and against etcd's own grpc-proxy of the same release, side by side.
# Figures only, nothing asserted; report in bench/results/hostile/latest.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CARGO="${CARGO:-cargo}"
scale="${HOSTILE_SCALE:-3}"
minor="${HOSTILE_ETCD:-3.6}"
dir="$(scripts/etcd-bin.sh "$minor")"
out="$root/bench/results/hostile/latest.md"
mkdir -p "$(dirname "$out")"
run() {
  ETCD_BIN="$dir/etcd" ETCDCTL_BIN="$dir/etcdctl" HOSTILE_SCALE="$scale" HOSTILE_REPORT=1 "$@" \
    $CARGO test --release --test it hostile:: -- --test-threads=1 --nocapture 2>&1 |
    grep -o 'hostile |.*' | sed 's/^hostile //'
}
{
  echo "## Hostile clients, side by side"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), etcd $("$dir/etcd" --version | awk '/etcd Version/ {print $3}'), scale $scale, release build; one member; a good client's p99 of 200 serializable Gets before and after each attack, and the proxy's RSS growth. Ours runs with --memory-budget-bytes=64MiB."
  echo
  echo "| proxy | attack | after | good p99 before | good p99 after | RSS growth | calls shed |"
  echo "|---|---|---|---|---|---|---|"
  run env
  run env HOSTILE_TARGET=etcd
} >"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
