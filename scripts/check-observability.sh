#!/usr/bin/env bash
# Checks deploy/grafana/etcd-grpc-proxy.json and deploy/prometheus/alerts.yml
# against a real proxy: `promtool check rules` and `promtool test rules` on the
# alerts, `promtool check rules` on the dashboard's expressions (made into
# recording rules, so their PromQL is parsed), and every metric they name must
# appear on the proxy's /metrics (the text given as $1). `up` is Prometheus's
# own scrape metric, the one name that cannot be on /metrics.
# Run by scripts/test-ha.sh with the /metrics of a proxy that went through
# every scenario.
set -euo pipefail
export LC_ALL=C
root="$(cd "$(dirname "$0")/.." && pwd)"
metrics=$1
command -v promtool >/dev/null 2>&1 ||
  { echo "check-observability: promtool not found: apt-get install -y prometheus (or make deps-ha)" >&2; exit 1; }
dash="$root/deploy/grafana/etcd-grpc-proxy.json" rules="$root/deploy/prometheus/alerts.yml"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

promtool check rules "$rules"
(cd "$root/deploy/prometheus" && promtool test rules alerts.test.yml)
python3 "$root/scripts/metric-names.py" "$dash" "$rules" --promql "$tmp/dashboard.yml" >"$tmp/used"
promtool check rules "$tmp/dashboard.yml"

# Names the proxy exposes: TYPE lines (present before a labelled series exists) and samples.
awk '/^# TYPE / {print $3} !/^#/ && NF {sub(/[{ ].*/, ""); print}' "$metrics" | sort -u >"$tmp/exposed"
missing=$(grep -vx up "$tmp/used" | comm -23 - "$tmp/exposed")
if [ -n "$missing" ]; then
  echo "check-observability: named in the dashboard or alerts but not on /metrics:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "check-observability: ok ($(wc -l <"$tmp/used") metric names, all on /metrics)"
