#!/bin/sh
# The first process of a cluster host, run by up.sh inside fresh network,
# UTS, mount, PID and IPC namespaces: names the host, gives it a private
# /tmp, /dev/shm and /var/tmp and its own /etc/hosts, says it is ready,
# then waits. Killing it kills everything on the host.
#   host-init.sh NAME HOSTS_FILE READY_FILE RELAY_SOCKET
set -eu
name=$1 hosts=$2 ready=$3 relay=$4
hostname "$name"
mount --make-rprivate /
for d in /tmp /dev/shm /var/tmp; do
  mount -t tmpfs -o mode=1777 "$name-$(basename "$d")" "$d"
done
mount --bind "$hosts" /etc/hosts
# the host's remote shell (Open MPI's launcher reaches it through agent.sh)
/usr/bin/python3 "$(dirname "$0")/relay.py" serve "$relay" &
i=0
while [ ! -S "$relay" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
echo ready >"$ready"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
