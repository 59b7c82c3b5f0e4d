#!/usr/bin/env bash
# Kills one cluster host as a power cut would: its first process, and with
# it everything the host ran; its link goes with its network namespace.
#   scripts/cluster/kill-host.sh HOST
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -eq 1 ] || cluster_die "usage: kill-host.sh HOST"
pid=$(cluster_pid "$1")
kill -KILL "$pid"
rm -f "$CLUSTER_DIR/$1.pid" "$CLUSTER_DIR/$1.sock"
