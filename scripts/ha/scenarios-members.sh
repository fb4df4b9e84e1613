# shellcheck shell=bash
# The seed's story behind the HA pair: member add, then the first member dies
# (sourced after scenarios-common.sh).

# members_seen K: every proxy has K members in its member set.
members_seen() {
  local n; for n in 1 2 3; do [ "$(ha_metric "$n" etcd_grpc_proxy_backend_members)" = "$1" ] || return 1; done
}
# in_rotation K: every proxy has K members in rotation.
in_rotation() {
  local n; for n in 1 2 3; do [ "$(ha_metric "$n" etcd_grpc_proxy_backend_members_in_rotation)" = "$1" ] || return 1; done
}

scenario_member_change() {
  say "4. etcd member add m4, then m1 (the leader) dies, behind the VIP"
  load_start members "$HA_VIP"
  local out t0 learned rot
  until out=$(ha_in e1 "$ETCDCTL_BIN" --endpoints=10.78.0.11:2379 member add m4 --peer-urls=http://10.78.0.14:2380 2>&1); do
    grep -q "unhealthy cluster" <<<"$out" || { echo "$out"; check false "member add failed"; break; }
    sleep 0.5
  done
  echo "$out" | head -1
  t0=$(now_ms)
  ha_member 4 "$HA_CLUSTER,m4=http://10.78.0.14:2380" existing
  ha_wait "m4 healthy" 60 member_healthy 4
  ha_wait "every proxy to see 4 members" 30 members_seen 4; learned=$(($(now_ms) - t0))
  # The worst case: m1 is also the leader, so its death needs an election.
  local m1_id; m1_id=$(ha_in e1 "$ETCDCTL_BIN" --endpoints=10.78.0.11:2379 endpoint status -w json |
    grep -o '"member_id":[0-9]*' | head -1 | cut -d: -f2)
  ha_in e1 "$ETCDCTL_BIN" --endpoints=10.78.0.11:2379,10.78.0.12:2379,10.78.0.13:2379,10.78.0.14:2379 \
    move-leader "$(printf '%x' "$m1_id")" >/dev/null 2>&1 || true
  echo "every proxy follows m4 ${learned} ms after it started; m1 leads; kill -9 m1"
  t0=$(now_ms)
  kill -KILL "$(ha_pid m1)"; wait "$(ha_pid m1)" 2>/dev/null || true
  ha_wait "every proxy to take m1 out of rotation" 30 in_rotation 3; rot=$(($(now_ms) - t0))
  ha_wait "a call through the VIP" 20 spot_quiet "$HA_VIP"
  load_stop members
  row "4. VIP: member add m4 + kill -9 m1 (the leader)" "$HA_VIP" "proxies saw m4 ${learned} ms after start; m1 out of rotation after ${rot} ms"
  spot "$HA_VIP" members
  ha_in c "$ETCDCTL_BIN" --endpoints="$HA_VIP:23790" member list
}
