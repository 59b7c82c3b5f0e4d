#!/usr/bin/env bash
# Stops the cluster up.sh made: kills every host (and so everything on
# it), removes its links and bridge. Safe to run when nothing is up.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
for f in "$CLUSTER_DIR"/n*.pid; do
  [ -e "$f" ] || continue
  pid=$(cat "$f")
  [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null
  rm -f "$f" "${f%.pid}.ready" "${f%.pid}.sock"
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^$CLUSTER_BRIDGE-n"); do
  ip link del "$link" 2>/dev/null
done
ip link del "$CLUSTER_BRIDGE" 2>/dev/null
# Slurm's daemons and jobs (slurm-up.sh) ran on the hosts and ended with them
rm -rf "$CLUSTER_DIR/slurm"
# the hosts' unshare launchers end with their first processes
for ((t = 0; t < 40; t++)); do
  pgrep -f "$CLUSTER_DIR/bin/host-init.sh" >/dev/null || break
  sleep 0.05
done
exit 0
