#!/usr/bin/env bash
# Kills one cluster host: its first process, and with it everything the
# host ran; its link goes with its network namespace.
#   scripts/cluster/kill-host.sh [--silent] HOST
# Without --silent the dying processes' connections are closed by the
# kernel, which tells the peers (FIN/RST) before the link goes: a crash
# that the network reports. With --silent the link is cut first, so the
# host goes without a word, as in a power cut: its peers learn it only by
# their own timeouts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
silent=0
[ "${1:-}" = --silent ] && { silent=1; shift; }
[ $# -eq 1 ] || cluster_die "usage: kill-host.sh [--silent] HOST"
pid=$(cluster_pid "$1")
[ $silent -eq 0 ] || ip link set "$CLUSTER_BRIDGE-$1" down
kill -KILL "$pid"
rm -f "$CLUSTER_DIR/$1.pid" "$CLUSTER_DIR/$1.sock"
