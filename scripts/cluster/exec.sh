#!/usr/bin/env bash
# Runs a command on a cluster host, in the current directory (which must
# be one every host sees, e.g. under $RINGMASTER_CLUSTER_DIR/shared or the
# repository), with Open MPI set to launch across the cluster: its remote
# launcher is agent.sh instead of ssh, the default hostfile lists every
# host, and its traffic between hosts goes over the hosts' eth0 (TCP).
#   scripts/cluster/exec.sh HOST CMD [ARGS...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -ge 2 ] || cluster_die "usage: exec.sh HOST CMD [ARGS...]"
pid=$(cluster_pid "$1")
shift
export OMPI_MCA_plm_rsh_agent=$CLUSTER_DIR/bin/agent.sh
export OMPI_MCA_orte_default_hostfile=$CLUSTER_DIR/hostfile
export OMPI_MCA_btl_tcp_if_include=eth0
export OMPI_MCA_oob_tcp_if_include=eth0
export RINGMASTER_CLUSTER_DIR=$CLUSTER_DIR
# Slurm's commands find the cluster's Slurm (slurm-up.sh) while it is up
[ ! -f "$CLUSTER_DIR/slurm/slurm.conf" ] || export SLURM_CONF=$CLUSTER_DIR/slurm/slurm.conf
exec nsenter -t "$pid" -n -u -m -p -i --wd="$PWD" -- "$@"
