#!/usr/bin/env bash
# Runs Kubernetes' own storage suites (tests/kubernetes, Go) through the proxy
# and directly, on 3-member etcd clusters of the 3.6 line, with the proxy
# binary cargo built (target/debug/etcd-grpc-proxy, or $PROXY_BIN).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CARGO="${CARGO:-cargo}"
bin="$(scripts/etcd-bin.sh 3.6)"
if [ -z "${PROXY_BIN:-}" ]; then
  $CARGO build
  PROXY_BIN="$root/target/debug/etcd-grpc-proxy"
fi
export ETCD_BIN="$bin/etcd" PROXY_BIN
export GOCACHE="$root/target/go/cache" GOMODCACHE="$root/target/go/mod" GOFLAGS="-modcacherw -buildvcs=false"
cd tests/kubernetes
go test -count=1 -timeout 20m ./...
