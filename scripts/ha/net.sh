# shellcheck shell=bash
# Network plumbing for the HA test (sourced): one bridge in the root
# namespace and one network namespace per node, each with an `eth0` veth on
# the bridge. Every name starts with `egpha`, every address is in 10.78.0.0/24.
#
#   egpha-e1..e4  etcd members    10.78.0.11..14
#   egpha-p1..p3  proxies         10.78.0.21..23 (+ keepalived; VIP 10.78.0.100)
#   egpha-lb      HAProxy         10.78.0.30
#   egpha-c       clients         10.78.0.50

HA_BRIDGE=egpha-br
HA_VIP=10.78.0.100
HA_LB=10.78.0.30

# ha_addr NODE: the node's address (e1 -> 10.78.0.11, p2 -> 10.78.0.22, ...).
ha_addr() {
  case $1 in
    e?) echo "10.78.0.1${1#e}" ;;
    p?) echo "10.78.0.2${1#p}" ;;
    lb) echo "$HA_LB" ;;
    c) echo 10.78.0.50 ;;
  esac
}

# ha_in NODE CMD...: runs CMD inside the node's namespace.
ha_in() { local n=$1; shift; ip netns exec "egpha-$n" "$@"; }

# ha_net_down: kills whatever runs in our namespaces, removes them and the bridge.
ha_net_down() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^egpha-/ {print $1}'); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^egpha-/ {sub(/@.*/, "", $2); print $2}'); do
    ip link del "$l" 2>/dev/null || true
  done
}

# ha_node NODE: creates the node's namespace, veth and address.
ha_node() {
  local n=$1 ns="egpha-$1"
  ip netns add "$ns"
  ip link add "egpha-$n" type veth peer name eth0 netns "$ns"
  ip link set "egpha-$n" master "$HA_BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(ha_addr "$n")/24" dev eth0
  ip -n "$ns" link set eth0 up
}

# ha_net_up: the bridge and every node.
ha_net_up() {
  ip link add "$HA_BRIDGE" type bridge mcast_snooping 0
  ip link set "$HA_BRIDGE" up
  local n
  for n in e1 e2 e3 e4 p1 p2 p3 lb c; do ha_node "$n"; done
}
