#!/usr/bin/env bash
# Stops the Slurm slurm-up.sh started on the cluster: on each host its
# slurmd (and slurmctld on n0), then munged, by their pid files, and waits
# until they are gone; the jobs they ran end with them. Removes the state.
# Safe to run when nothing is up; down.sh (which kills the hosts, and so
# everything on them) runs it first.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
S=$CLUSTER_DIR/slurm
[ -d "$S" ] || exit 0
# the jobs first (their steps are not the daemons' children), given
# KillWait to end
if pid=$(cat "$CLUSTER_DIR/n0.pid" 2>/dev/null) && [ -d "/proc/$pid" ]; then
  ctl() { nsenter -t "$pid" -n -u -m -p -i -- env SLURM_CONF="$S/slurm.conf" "$@"; }
  if ctl timeout 5 scancel --user=root 2>/dev/null; then
    for ((t = 0; t < 80; t++)); do
      [ -z "$(ctl timeout 5 squeue -h -t RUNNING,COMPLETING,PENDING,CONFIGURING -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
fi
for h in $(cluster_hosts); do
  pid=$(cat "$CLUSTER_DIR/$h.pid")
  [ -d "/proc/$pid" ] || continue
  # pids in the files are the host's own (its PID namespace)
  nsenter -t "$pid" -m -p -- sh -c '
    stop() {
      for f in "$@"; do
        [ -s "$f" ] || continue
        p=$(cat "$f")
        kill "$p" 2>/dev/null || continue
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$p" 2>/dev/null
      done
    }
    stop "$1/$2/slurmd.pid"
    [ "$2" != n0 ] || stop "$1/ctld/slurmctld.pid"
    stop /var/tmp/rm-munge/munged.pid' stop "$S" "$h"
done
rm -rf "$S"
exit 0
