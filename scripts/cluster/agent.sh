#!/usr/bin/env bash
# Open MPI's remote launcher on the cluster (plm_rsh_agent), in ssh's
# place: `agent.sh HOST COMMAND...` runs the command line on that host,
# through the host's relay (relay.py: a host's PID namespace cannot be
# entered from another host's). Open MPI passes the line as words to
# join, as ssh does.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
while [[ ${1:-} == -* ]]; do shift; done # ssh-style options, if any
[ $# -ge 2 ] || cluster_die "agent: usage: agent.sh HOST COMMAND..."
host=$1
shift
sock=$CLUSTER_DIR/$host.sock
[ -S "$sock" ] || cluster_die "agent: no host $host (or it is down)"
exec /usr/bin/python3 "$CLUSTER_HERE/relay.py" run "$sock" "$@"
