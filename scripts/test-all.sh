#!/usr/bin/env bash
# `make test`: every stage in turn, each announced with what it checks and
# how long it usually takes on a 2-core machine, then one table: stage,
# result, time. A failed stage does not stop the later ones (their results
# are worth having); the run fails if any stage failed.
#
# TEST_STAGES (space-separated names) runs a subset, e.g.
# `TEST_STAGES="matrix deploy" make test`.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CARGO="${CARGO:-cargo}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# name | what it checks | expected time on 2 cores (warm caches; a cold
# machine adds the etcd and Rust builds, about 8 minutes, to the first)
stages=(
  "matrix|unit tests, then tests/it against etcd 3.4, 3.5, 3.6, 3.7 and 3.5.1|11 min"
  "kubernetes|Kubernetes' storage suites through the proxy and directly|3 min"
  "robustness|traffic under injected faults, checked for linearizability|2 min"
  "deploy|static checks of every file in deploy/|1 min"
  "ha|keepalived VIP and HAProxy failover (network namespaces)|2 min"
)

run_stage() {
  case "$1" in
    matrix) CARGO=$CARGO bash scripts/test-matrix.sh ;;
    kubernetes) CARGO=$CARGO bash scripts/test-kubernetes.sh ;;
    robustness) CARGO=$CARGO ROBUSTNESS_COMPARE=0 ROBUSTNESS_SEEDS="${ROBUSTNESS_SEEDS:-1}" bash scripts/robustness.sh ;;
    deploy) CARGO=$CARGO bash scripts/test-deploy.sh ;;
    ha) $SUDO env CARGO="$CARGO" PATH="$PATH" bash scripts/test-ha.sh ;;
    *) echo "unknown stage $1"; return 2 ;;
  esac
}

wanted="${TEST_STAGES:-}"
total=${#stages[@]}
rows=()
failed=0
n=0
all_start=$(date +%s)
for s in "${stages[@]}"; do
  IFS='|' read -r name what expected <<<"$s"
  n=$((n + 1))
  if [ -n "$wanted" ] && ! grep -qw "$name" <<<"$wanted"; then
    rows+=("$name|skipped (TEST_STAGES)|-")
    continue
  fi
  echo
  echo "=== stage $n/$total: $name: $what (usually about $expected)"
  start=$(date +%s)
  if run_stage "$name"; then result=passed; else result=FAILED; failed=1; fi
  secs=$(( $(date +%s) - start ))
  echo "=== stage $n/$total: $name $result in $((secs / 60)) min $((secs % 60)) s"
  rows+=("$name|$result|$((secs / 60)) min $((secs % 60)) s")
done
secs=$(( $(date +%s) - all_start ))

echo
echo "=== make test summary"
printf '%-12s  %-22s  %s\n' stage result time
for r in "${rows[@]}"; do
  IFS='|' read -r name result t <<<"$r"
  printf '%-12s  %-22s  %s\n' "$name" "$result" "$t"
done
printf '%-12s  %-22s  %s\n' total "$([ $failed = 0 ] && echo passed || echo FAILED)" "$((secs / 60)) min $((secs % 60)) s"
exit $failed
