#!/usr/bin/env bash
# Builds a real etcd member and etcdctl of one pinned release from etcd's Go
# modules, cached under target/etcd/<minor>/ (bin/etcd and bin/etcdctl).
# Usage: scripts/etcd-build.sh <line> <version>   (scripts/etcd-bin.sh passes a
# line of tests/etcd-versions/VERSIONS, e.g. `3.6 v3.6.16`)
# Prints the bin directory. Go's build and module caches live under target/go/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
minor="$1"
version="$2"
command -v go >/dev/null || { echo "etcd-build: go not found: install Go (https://go.dev/dl) to build etcd $version" >&2; exit 1; }
out="$root/target/etcd/$minor"
stamp="$out/bin/.version"
if [ -x "$out/bin/etcd" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  echo "$out/bin"; exit 0
fi
mkdir -p "$out/src" "$out/bin"
export GOCACHE="$root/target/go/cache" GOMODCACHE="$root/target/go/mod" GOFLAGS="-modcacherw -buildvcs=false"
cp "$root/tests/etcd-versions/main.go" "$out/src/main.go"
cd "$out/src"
rm -f go.mod go.sum
go mod init etcd-grpc-proxy.test/etcd >/dev/null 2>&1
go get "go.etcd.io/etcd/server/v3@$version" "go.etcd.io/etcd/etcdctl/v3@$version" >&2
go mod tidy >&2
go build -trimpath -ldflags=-s -o "$out/bin/etcd" . >&2
ln -sf etcd "$out/bin/etcdctl"
echo "$version" >"$stamp"
echo "$out/bin"
