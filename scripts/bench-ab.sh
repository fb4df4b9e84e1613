#!/usr/bin/env bash
# A/B: instructions per call of two commits of the proxy, in one run, on
# the same etcd member and driver (scripts/bench-instructions.sh does the
# counting). For changes that must not cost anything, such as a reshape.
#
#   scripts/bench-ab.sh BASE [HEAD]     (make bench-ab AB_BASE=<rev>)
#
# Each commit is exported with `git archive` under target/ab/ and built in
# release mode there (in its own target/ab/target); HEAD defaults to
# the working tree. Writes bench/results/ab/latest.md: per call kind, A, B
# and the change. Callgrind counts of one binary move by up to about 1%
# between runs (timing of the member's answers), so a change above 2% is real.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
base="${1:?usage: scripts/bench-ab.sh BASE [HEAD]}"
head="${2:-}"
CARGO="${CARGO:-cargo}"

# Prints the path of the release binary of commit $1 (working tree if empty).
binary_of() {
  local rev="$1"
  if [ -z "$rev" ]; then
    $CARGO build --release >&2
    echo "$root/target/release/etcd-grpc-proxy"
    return
  fi
  local short; short="$(git rev-parse --short "$rev")"
  local src="$root/target/ab/src-$short" bin="$root/target/ab/etcd-grpc-proxy-$short"
  if [ ! -x "$bin" ]; then
    rm -rf "$src" && mkdir -p "$src"
    git archive "$rev" | tar -x -C "$src"
    (cd "$src" && CARGO_TARGET_DIR="$root/target/ab/target" $CARGO build --release --bin etcd-grpc-proxy >&2)
    cp "$root/target/ab/target/release/etcd-grpc-proxy" "$bin"
  fi
  echo "$bin"
}

# Prints "kind per-call" lines for binary $1.
count() {
  INSTR_BIN="$1" INSTR_LABEL="$2" bash "$root/scripts/bench-instructions.sh" 2>&1 >/dev/null |
    awk '/ per call$/ {sub(":", "", $1); print $1, $(NF-2)}'
}

a_bin="$(binary_of "$base")"
b_bin="$(binary_of "$head")"
a_name="$(git rev-parse --short "$base")"
b_name="${head:+$(git rev-parse --short "$head")}"
if [ -z "$b_name" ]; then
  b_name="$(git rev-parse --short HEAD)"
  [ -z "$(git status --porcelain -- src Cargo.toml)" ] || b_name="$b_name+"
fi
declare -A a b
while read -r k v; do a[$k]=$v; done < <(count "$a_bin" "A/B: A = $a_name")
while read -r k v; do b[$k]=$v; done < <(count "$b_bin" "A/B: B = $b_name")

out="$root/bench/results/ab"
mkdir -p "$out"
{
  echo "## A/B: instructions per call, $a_name (A) against $b_name (B)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); scripts/bench-ab.sh; callgrind, whole proxy process, one etcd member, the same driver for both."
  echo
  echo "| call | A | B | B/A |"
  echo "|---|---:|---:|---:|"
  for k in get-cached get put txn; do
    if [ -n "${a[$k]:-}" ] && [ -n "${b[$k]:-}" ]; then
      ratio="$(awk -v x="${a[$k]}" -v y="${b[$k]}" 'BEGIN { printf "%.3f", y / x }')"
      echo "| $k | ${a[$k]} | ${b[$k]} | $ratio |"
    fi
  done
} >"$out/latest.md"
cat "$out/latest.md"
