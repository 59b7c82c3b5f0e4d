#!/usr/bin/env bash
# Makes a cluster of K hosts on this machine (root; Linux namespaces):
#
#   scripts/cluster/up.sh K [--slots S]
#
# Host nI (I = 0..K-1) is its own network, UTS (hostname nI), mount, PID
# and IPC namespace, with a private /tmp, /dev/shm and /var/tmp, address
# $RINGMASTER_CLUSTER_NET.(10+I) on eth0, a veth link to a bridge that
# only the hosts are on (no address on this machine's side, no default
# route, no NAT: nothing outside the cluster is reachable from a host),
# and $RINGMASTER_CLUSTER_DIR/shared, which every host sees (the cluster's
# shared filesystem; the rest of this machine's files are the hosts'
# installed software, as on a real cluster). Names resolve through each
# host's /etc/hosts.
#
# Then: scripts/cluster/exec.sh HOST CMD... runs a command on a host
# (with Open MPI set to launch across the hosts through agent.sh),
# scripts/cluster/kill-host.sh HOST kills one, scripts/cluster/down.sh
# stops everything. A cluster already up is taken down first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 32 ] ||
  cluster_die "usage: up.sh K [--slots S] (1 <= K <= 32 hosts)"
hosts=$1
slots=2
shift
while [ $# -gt 0 ]; do
  case $1 in
    --slots) slots=$2; shift 2 ;;
    *) cluster_die "unknown argument '$1'" ;;
  esac
done
[ "$(id -u)" = 0 ] || cluster_die "needs root (network and mount namespaces)"
for tool in unshare nsenter ip; do
  command -v "$tool" >/dev/null || cluster_die "needs $tool (Debian: util-linux, iproute2)"
done

"$CLUSTER_HERE/down.sh" >/dev/null 2>&1 || true
mkdir -p "$CLUSTER_DIR/shared" "$CLUSTER_DIR/bin"
# what runs on the hosts, where every host sees it (a repository under
# /tmp is not: each host has its own /tmp)
cp "$CLUSTER_HERE"/{lib.sh,host-init.sh,relay.py,agent.sh} "$CLUSTER_DIR/bin/"
chmod 1777 "$CLUSTER_DIR/shared"
{
  echo "127.0.0.1 localhost"
  for ((i = 0; i < hosts; i++)); do echo "$CLUSTER_NET.$((10 + i)) n$i"; done
} >"$CLUSTER_DIR/hosts"
for ((i = 0; i < hosts; i++)); do echo "n$i slots=$slots"; done >"$CLUSTER_DIR/hostfile"

ip link add "$CLUSTER_BRIDGE" type bridge
ip link set "$CLUSTER_BRIDGE" up
for ((i = 0; i < hosts; i++)); do
  name=n$i
  rm -f "$CLUSTER_DIR/$name.ready"
  # setsid: the host outlives this script and the shell that ran it
  setsid unshare --net --uts --mount --pid --ipc --fork --mount-proc --propagation private \
    "$CLUSTER_DIR/bin/host-init.sh" "$name" "$CLUSTER_DIR/hosts" "$CLUSTER_DIR/$name.ready" "$CLUSTER_DIR/$name.sock" \
    </dev/null >"$CLUSTER_DIR/$name.log" 2>&1 &
  launcher=$!
  for ((t = 0; t < 100; t++)); do
    [ -s "$CLUSTER_DIR/$name.ready" ] && break
    sleep 0.05
  done
  [ -s "$CLUSTER_DIR/$name.ready" ] || cluster_die "host $name did not start: $(cat "$CLUSTER_DIR/$name.log")"
  # the host's first process: unshare's child, pid 1 inside
  pid=$(cat "/proc/$launcher/task/$launcher/children" 2>/dev/null | awk '{print $1}')
  [ -n "$pid" ] || cluster_die "cannot find host $name's first process"
  echo "$pid" >"$CLUSTER_DIR/$name.pid"
  ip link add "$CLUSTER_BRIDGE-$name" type veth peer name "$CLUSTER_BRIDGE-$name-h"
  ip link set "$CLUSTER_BRIDGE-$name" master "$CLUSTER_BRIDGE" up
  ip link set "$CLUSTER_BRIDGE-$name-h" netns "$pid"
  nsenter -t "$pid" -n sh -c "ip link set lo up && ip link set $CLUSTER_BRIDGE-$name-h name eth0 &&
    ip addr add $CLUSTER_NET.$((10 + i))/24 dev eth0 && ip link set eth0 up"
done
echo "cluster: $hosts hosts up (n0..n$((hosts - 1)), $CLUSTER_NET.10-$((9 + hosts)), shared $CLUSTER_DIR/shared)"
