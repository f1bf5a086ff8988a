# Sourced by end-to-end tests: pods as network namespaces with their own addresses on one bridge.
#
#   netns_pods_up ID SUBNET POD...   namespace ${ID}hub holds bridge br0; each POD gets namespace
#                                    ${ID}${POD} whose eth0 is SUBNET.1, SUBNET.2, ... (in order),
#                                    with lo up. Returns 77 where namespaces cannot be made (needs
#                                    root and iproute2), after saying so.
#   netns_pods_down ID POD...        deletes them (quietly, whatever exists).

netns_pods_up() {
  local id=$1 subnet=$2
  shift 2
  if [ "$(id -u)" -ne 0 ] || ! ip netns add "${id}hub" 2>/dev/null; then
    echo "SKIP: network namespaces are not available here (needs root and iproute2)"
    return 77
  fi
  ip -n "${id}hub" link add br0 type bridge
  ip -n "${id}hub" link set br0 up
  local i=1 pod ns
  for pod in "$@"; do
    ns="${id}${pod}"
    ip netns add "$ns"
    ip link add "v${id}${i}" type veth peer name eth0 netns "$ns"
    ip link set "v${id}${i}" netns "${id}hub"
    ip -n "${id}hub" link set "v${id}${i}" master br0 up
    ip -n "$ns" addr add "${subnet}.${i}/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    i=$((i + 1))
  done
}

netns_pods_down() {
  local id=$1 pod
  shift
  for pod in "$@"; do ip netns del "${id}${pod}" 2>/dev/null || true; done
  ip netns del "${id}hub" 2>/dev/null || true
}
