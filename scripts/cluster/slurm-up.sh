#!/usr/bin/env bash
# Starts a real Slurm (Debian's slurm-wlm) on the cluster up.sh made:
#
#   scripts/cluster/slurm-up.sh          # after scripts/cluster/up.sh K
#   scripts/cluster/slurm-down.sh        # stops it (down.sh stops it too)
#
# Every daemon runs on a host, inside its namespaces, as on a real
# cluster: one munged per host (its socket in the host's own /var/tmp, so
# a host's daemons authenticate through their own host's munged), one
# slurmd per host, and slurmctld on n0. The configuration is written to
# $RINGMASTER_CLUSTER_DIR/slurm/slurm.conf: a node per host (its address,
# as many CPUs as the hostfile's slots), one partition, select/cons_tres,
# proctrack/linuxproc and no cgroups. Each daemon has its own state, log
# and pid files under $RINGMASTER_CLUSTER_DIR/slurm/nI (slurmctld's under
# .../slurm/ctld). Slurm's commands need SLURM_CONF (scripts/cluster/exec.sh
# sets it while this Slurm is up) and must run on a host: the daemons'
# addresses are on the cluster's bridge only.
#
#   scripts/cluster/exec.sh n0 sbatch --nodes=2 --ntasks=3 scripts/slurm/ringmaster.sbatch JOB.yaml
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
for tool in slurmctld slurmd munged; do
  command -v "$tool" >/dev/null || cluster_die "needs $tool (Debian: slurm-wlm, munge; scripts/install-deps.sh)"
done
[ -s /etc/munge/munge.key ] || cluster_die "needs the munge key /etc/munge/munge.key (Debian's munge package makes it)"
mapfile -t hosts < <(cluster_hosts)
[ ${#hosts[@]} -ge 1 ] || cluster_die "no cluster in $CLUSTER_DIR (scripts/cluster/up.sh K makes one)"
"$CLUSTER_HERE/slurm-down.sh" >/dev/null 2>&1 || true

S=$CLUSTER_DIR/slurm
CONF=$S/slurm.conf
rm -rf "$S"
mkdir -p "$S/ctld/state"
# on HOST CMD...: runs CMD inside HOST's namespaces; what it leaves behind
# (a daemon) lives on the host and dies with it
on() {
  local pid
  pid=$(cluster_pid "$1")
  shift
  nsenter -t "$pid" -n -u -m -p -i -- env SLURM_CONF="$CONF" "$@"
}

{
  cat <<CONF
ClusterName=ringmaster
SlurmctldHost=n0($CLUSTER_NET.10)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# each host's own munged; a short credential life: a requeued job starts
# again in seconds, not minutes
AuthInfo=socket=/var/tmp/rm-munge/munge.socket,cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
ReturnToService=2
# a host that stops answering is DOWN within seconds, not minutes
SlurmdTimeout=10
KillWait=5
MinJobAge=600
# an impossible request fails at once instead of pending forever
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
StateSaveLocation=$S/ctld/state
SlurmctldPidFile=$S/ctld/slurmctld.pid
SlurmctldLogFile=$S/ctld/slurmctld.log
SlurmdSpoolDir=$S/%n/spool
SlurmdPidFile=$S/%n/slurmd.pid
SlurmdLogFile=$S/%n/slurmd.log
CONF
  while read -r name slots; do
    i=${name#n}
    echo "NodeName=$name NodeAddr=$CLUSTER_NET.$((10 + i)) CPUs=${slots#slots=} State=UNKNOWN"
  done <"$CLUSTER_DIR/hostfile"
  echo "PartitionName=cluster Nodes=$(IFS=,; echo "${hosts[*]}") Default=YES MaxTime=INFINITE State=UP"
} >"$CONF"

for h in "${hosts[@]}"; do
  mkdir -p "$S/$h/spool"
  on "$h" sh -c 'install -d -o munge -g munge -m 0755 /var/tmp/rm-munge &&
    runuser -u munge -- /usr/sbin/munged --socket=/var/tmp/rm-munge/munge.socket \
      --pid-file=/var/tmp/rm-munge/munged.pid --log-file=/var/tmp/rm-munge/munged.log \
      --seed-file=/var/tmp/rm-munge/munged.seed' ||
    cluster_die "munged did not start on $h"
done
on n0 /usr/sbin/slurmctld -f "$CONF" || cluster_die "slurmctld did not start: $(cat "$S/ctld/slurmctld.log" 2>/dev/null)"
for h in "${hosts[@]}"; do
  on "$h" /usr/sbin/slurmd -f "$CONF" || cluster_die "slurmd did not start on $h: $(cat "$S/$h/slurmd.log" 2>/dev/null)"
done
for ((t = 0; t < 150; t++)); do
  idle=$(on n0 sinfo -h -N -o '%N %T' 2>/dev/null | grep -c ' idle$' || true)
  [ "$idle" -eq ${#hosts[@]} ] && break
  sleep 0.2
done
[ "$idle" -eq ${#hosts[@]} ] || {
  on n0 sinfo -N >&2 || true
  tail -n 20 "$S"/ctld/slurmctld.log "$S"/n*/slurmd.log >&2 || true
  cluster_die "Slurm did not come up: $idle of ${#hosts[@]} nodes idle"
}
echo "cluster: slurm up on ${hosts[*]} (slurmctld on n0; SLURM_CONF=$CONF, set by exec.sh)"
