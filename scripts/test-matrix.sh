#!/usr/bin/env bash
# Runs the unit tests once, then the integration suite (tests/it) against
# every etcd release of tests/etcd-versions/VERSIONS, or only the ones named
# as arguments (`scripts/test-matrix.sh 3.6`). Builds the test binaries once;
# each release's etcd and etcdctl come from scripts/etcd-bin.sh.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CARGO="${CARGO:-cargo}"
THREADS="${TEST_THREADS:-3}"
if [ $# -gt 0 ]; then minors=("$@"); else mapfile -t minors < <(awk '!/^#/ && NF {print $1}' tests/etcd-versions/VERSIONS); fi

# Every etcd release first, so the builds don't compete with the tests.
declare -A bins
for m in "${minors[@]}"; do
  echo "== etcd $m"
  bins[$m]="$(scripts/etcd-bin.sh "$m")" || { echo "cannot get etcd $m (see above)"; exit 1; }
done
$CARGO test --all-targets --no-run || exit 1
$CARGO test --lib --bins || exit 1

failed=()
summary=()
for m in "${minors[@]}"; do
  dir="${bins[$m]}"
  echo "== integration suite against etcd $m ($("$dir/etcd" --version | head -1))"
  start=$(date +%s)
  # The leak test (10,000 clients, ~40 s) and the hostile-client suite
  # (~25 s) measure the proxy, not the release: they run against the first
  # release only.
  skip=()
  if [ "$m" != "${minors[0]}" ]; then skip=(--skip leak:: --skip hostile::); fi
  if ETCD_BIN="$dir/etcd" ETCDCTL_BIN="$dir/etcdctl" $CARGO test --test it -- --test-threads="$THREADS" "${skip[@]}"; then
    summary+=("etcd $m: passed in $(( $(date +%s) - start )) s")
  else
    summary+=("etcd $m: FAILED")
    failed+=("$m")
  fi
done
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ]
