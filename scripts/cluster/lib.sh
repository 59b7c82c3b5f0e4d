# Shared by the cluster scripts: where the cluster's state lives and what
# its hosts are called. Sourced, not run.
#
#   RINGMASTER_CLUSTER_DIR   state (default /var/lib/ringmaster-cluster):
#                              hosts          /etc/hosts of every host
#                              hostfile       Open MPI hostfile (slots per host)
#                              nI.pid         host nI's first process, as the machine sees it
#                              shared/        the directory every host sees (the cluster's
#                                             shared filesystem)
#   RINGMASTER_CLUSTER_NET   the hosts' /24 (default 10.77.0): host nI is .(10+I)
#   RINGMASTER_CLUSTER_BRIDGE the bridge the hosts are on (default rmcl0); host
#                              nI's link is BRIDGE-nI, so two clusters with their
#                              own directory, net and bridge can be up at once
CLUSTER_DIR=${RINGMASTER_CLUSTER_DIR:-/var/lib/ringmaster-cluster}
CLUSTER_NET=${RINGMASTER_CLUSTER_NET:-10.77.0}
CLUSTER_BRIDGE=${RINGMASTER_CLUSTER_BRIDGE:-rmcl0}
CLUSTER_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

cluster_die() {
  echo "cluster: $*" >&2
  exit 1
}
[ ${#CLUSTER_BRIDGE} -le 8 ] || cluster_die "bridge name '$CLUSTER_BRIDGE' is over 8 characters (its links are BRIDGE-nI-h)"

# cluster_pid HOST: the host's first process (killing it kills the host).
cluster_pid() {
  local f=$CLUSTER_DIR/$1.pid
  [ -f "$f" ] || cluster_die "no host $1 (scripts/cluster/up.sh makes them; state in $CLUSTER_DIR)"
  local pid
  pid=$(cat "$f")
  [ -d "/proc/$pid" ] || cluster_die "host $1 is down (its first process $pid is gone)"
  echo "$pid"
}

# cluster_hosts: the hosts' names, one per line.
cluster_hosts() {
  local f
  for f in "$CLUSTER_DIR"/n*.pid; do
    [ -e "$f" ] && basename "$f" .pid
  done | sort -V
}
