#!/usr/bin/env bash
# Takes one cluster host's link down or up, as a pulled cable would: the
# host and everything on it go on running, and nothing reaches it or
# leaves it (both ends of its veth pair go down).
#   scripts/cluster/link.sh HOST down|up
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -eq 2 ] && { [ "$2" = down ] || [ "$2" = up ]; } || cluster_die "usage: link.sh HOST down|up"
pid=$(cluster_pid "$1")
outside=$CLUSTER_BRIDGE-$1
ip link show "$outside" >/dev/null 2>&1 || cluster_die "host $1 has no link $outside"
ip link set "$outside" "$2"
nsenter -t "$pid" -n ip link set eth0 "$2"
echo "cluster: $1's link is $2"
