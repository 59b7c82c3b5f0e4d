#!/bin/bash
# A real single-node Slurm (slurm-wlm from Debian) on this machine, for the
# tests: `single-node.sh up` installs and starts munged, slurmctld and
# slurmd under $SLURM_SANDBOX (default /tmp/ringmaster-slurm) and waits
# until the node is idle; `single-node.sh down` stops what it started.
# Run as root. Clients need SLURM_CONF=$SLURM_SANDBOX/etc/slurm.conf.
set -euo pipefail
S=${SLURM_SANDBOX:-/tmp/ringmaster-slurm}
export SLURM_CONF=$S/etc/slurm.conf

down() {
  local pids="" f p i
  for f in "$S/run/slurmd.pid" "$S/run/slurmctld.pid" "$S/run/munged.started"; do
    [ -s "$f" ] && pids="$pids $(cat "$f")"
  done
  [ -n "$pids" ] && kill $pids 2>/dev/null || true
  for p in $pids; do for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done; done
  rm -f "$S/run/munged.started" "$S/run/slurmd.pid" "$S/run/slurmctld.pid"
}

up() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  fi
  if [ -s "$S/run/slurmctld.pid" ] && kill -0 "$(cat "$S/run/slurmctld.pid")" 2>/dev/null &&
     sinfo -h -o %T 2>/dev/null | grep -qx idle; then
    echo "slurm already up: export SLURM_CONF=$SLURM_CONF"
    return
  fi
  down
  rm -rf "$S/state"
  mkdir -p "$S"/{etc,state/ctld,state/d,log,run}
  cat > "$SLURM_CONF" <<CONF
ClusterName=ringmaster
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# short credential life: a requeued job starts again in seconds, not minutes
AuthInfo=cred_expire=10
MpiDefault=pmix
# pgid: background children of a job end with it
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
ReturnToService=2
KillWait=5
MinJobAge=600
# an impossible request fails at once instead of pending forever
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
StateSaveLocation=$S/state/ctld
SlurmdSpoolDir=$S/state/d
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${SLURM_CPUS:-8} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  install -d -o munge -g munge -m 0755 /run/munge
  [ -s /etc/munge/munge.key ] || { runuser -u munge -- mungekey -c 2>/dev/null || /usr/sbin/mungekey --create; }
  if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    cp /run/munge/munged.pid "$S/run/munged.started"
  fi
  munge -n | unmunge >/dev/null
  /usr/sbin/slurmctld -f "$SLURM_CONF"
  /usr/sbin/slurmd -f "$SLURM_CONF" -N localhost
  for _ in $(seq 1 100); do
    [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break
    sleep 0.2
  done
  sinfo -h -o %T | grep -qx idle || { cat "$S"/log/*.log >&2; exit 1; }
  echo "slurm up: export SLURM_CONF=$SLURM_CONF"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
