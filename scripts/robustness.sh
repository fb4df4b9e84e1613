#!/usr/bin/env bash
# Robustness: traffic through the proxy under injected faults, with the
# history checked for linearizability (porcupine), serializable reads, watch
# guarantees, leases, acknowledged writes and writes applied at most once
# (tests/robustness, Go).
#
#   ROBUSTNESS_SECS     seconds of traffic per run (default 40)
#   ROBUSTNESS_SEEDS    seeds, one run each (default "1 2")
#   ROBUSTNESS_COMPARE  1: also run etcd's own grpc-proxy at the same seeds
#                       (figures only, never a failure) (default 1)
#   ROBUSTNESS_REPORT   where the markdown report goes (default
#                       bench/results/robustness/latest.md with the comparison,
#                       target/robustness/latest.md without)
#   ROBUSTNESS_FAULTS   comma-separated faults to inject, in turn (default: all;
#                       e.g. answer-lost to inject only that one, often)
#   PROXY_BIN           our proxy binary (default: cargo build, target/debug)
#
# Members run in network namespaces (egpr*, 10.77.0.0/24), so this needs root.
# Fails when any guarantee is violated through our proxy, except the known
# findings listed in tests/robustness/known-findings.txt (reported as such).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CARGO="${CARGO:-cargo}"
secs="${ROBUSTNESS_SECS:-40}"
seeds="${ROBUSTNESS_SEEDS:-1 2}"
compare="${ROBUSTNESS_COMPARE:-1}"
fault_args=()
if [ -n "${ROBUSTNESS_FAULTS:-}" ]; then
  fault_args=(-faults "$ROBUSTNESS_FAULTS")
fi
if [ "$compare" = 1 ]; then
  report="${ROBUSTNESS_REPORT:-$root/bench/results/robustness/latest.md}"
else
  report="${ROBUSTNESS_REPORT:-$root/target/robustness/latest.md}"
fi

for t in ip tc ss; do
  command -v "$t" >/dev/null || { echo "robustness: $t not found: install iproute2 (apt-get install iproute2)" >&2; exit 1; }
done
command -v go >/dev/null || { echo "robustness: go not found: install Go (apt-get install golang-go, or https://go.dev/dl)" >&2; exit 1; }
as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "robustness: needs root for network namespaces: run as root (or install sudo)" >&2; exit 1; }
  as_root=(sudo -E)
fi

bin="$(scripts/etcd-bin.sh 3.6)"
if [ -z "${PROXY_BIN:-}" ]; then
  $CARGO build
  PROXY_BIN="$root/target/debug/etcd-grpc-proxy"
fi
export GOCACHE="$root/target/go/cache" GOMODCACHE="$root/target/go/mod" GOFLAGS="-modcacherw -buildvcs=false"
mkdir -p "$root/target/robustness" "$(dirname "$report")"
harness="$root/target/robustness/robustness"
tmp="$root/target/robustness/report.tmp"
summary="$root/target/robustness/summary.jsonl"
rm -f "$summary"
(cd tests/robustness && go test -count=1 ./checker/ && go build -o "$harness" ./cmd/robustness)

{
  echo "## Robustness report"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), etcd $("$bin/etcd" --version | awk '/etcd Version/ {print $3}'), ${secs}s of traffic per run, seeds: $seeds."
  echo "Three members, each in a network namespace of its own; two proxies; clients given both proxies. Our proxy: $PROXY_BIN."
  echo
} >"$tmp"

failed=0
for seed in $seeds; do
  rc=0
  "${as_root[@]}" "$harness" -target ours -secs "$secs" -seed "$seed" -proxy-bin "$PROXY_BIN" -etcd-bin "$bin/etcd" -report "$tmp" -summary "$summary" "${fault_args[@]}" \
    -known "$root/tests/robustness/known-findings.txt" || rc=$?
  case $rc in
    0) ;;
    1) echo "robustness: violations through our proxy at seed $seed" >&2; failed=1 ;;
    *) echo "robustness: the harness failed at seed $seed (exit $rc)" >&2; exit "$rc" ;;
  esac
done
if [ "$compare" = 1 ]; then
  for seed in $seeds; do
    "${as_root[@]}" "$harness" -target etcd -secs "$secs" -seed "$seed" -etcd-bin "$bin/etcd" -report "$tmp" -summary "$summary" "${fault_args[@]}" || \
      echo "robustness: etcd's grpc-proxy at seed $seed: exit $? (comparison only)" >&2
  done
fi
{
  sed '/^### /,$d' "$tmp"
  echo "Violations per guarantee (\"known\": a known finding, tests/robustness/known-findings.txt; etcd's grpc-proxy is measured, not judged):"
  echo
  "$harness" -summarize "$summary"
  echo "Faults that could not be injected as asked: see the notes under each run and docs/robustness.md."
  echo
  sed -n '/^### /,$p' "$tmp"
} >"$report"
rm -f "$tmp"
echo "robustness: report in $report"
exit "$failed"
