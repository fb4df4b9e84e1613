#!/usr/bin/env bash
# `make demo-ha`: the seed's last step, "start several proxy nodes and put a
# virtual IP in front of them", run for real on network namespaces, with the
# failover scenarios narrated as they happen. It is scripts/test-ha.sh (the
# same scenarios `make test` asserts) with the figures written to
# target/ha-demo.md instead of bench/results/ha/latest.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cat <<'TEXT'
High availability demo (needs root: it creates network namespaces egpha-*).

  egpha-e1..e3  etcd 3.6 members                 10.78.0.11..13  (m4 on .14 joins later)
  egpha-p1..p3  etcd-grpc-proxy, started with deploy/systemd's command line,
                + keepalived (deploy/keepalived/keepalived.conf)  10.78.0.21..23
                  holding the virtual IP                          10.78.0.100
  egpha-lb      HAProxy (deploy/haproxy/haproxy.cfg)              10.78.0.30
  egpha-c       clients: the Rust etcd-client (examples/ha_load.rs) and etcdctl,
                talking only to the VIP or to HAProxy             10.78.0.50

Each scenario runs under steady load (a Put or Get every 20 ms, a watch on
every key, a lease kept alive) and reports failed calls, the longest gap
without a successful call, and watch / keep-alive continuity.
TEXT
HA_RESULTS="${HA_RESULTS:-$root/target/ha-demo.md}" bash "$root/scripts/test-ha.sh"
cat <<'TEXT'

Reading the table: "VIP" rows are keepalived's VRRP address on the proxies
themselves (the VIP moves, so connections to the old holder are reset and
clients reconnect); "HAProxy" rows have a load balancer between clients and
proxies, where a drain lets connections finish. Watch "0 gaps, 0 dups" means
every revision was seen exactly once across reconnections.
TEXT
