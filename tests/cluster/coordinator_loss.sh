# The coordinator's host dies as in a power cut (its link cut first, so
# nothing tells the others): the coordinator on n0, workers on n1 and n2.
#   1. `ringmaster run` on n3 (not in the job) names n0 from mpirun's lost
#      daemon and restarts on n1 + n2 from the newest checkpoint.
#   2. `ringmaster run` was on the coordinator's host too (n1, workers on
#      n2 and n3): the workers and Open MPI's daemons on n2 and n3 end on
#      their own within fault.hang_timeout_s (no orphans), and the same
#      command run again from n2 takes over the dead host's lock once its
#      lease expires and resumes on n2 + n3.
# Both end with the weights of the job never interrupted.
source "$(dirname "$0")/lib.sh"
t0=$(date +%s)

up 4 --slots 1
job job.yaml 2 300 10
printf 'n0 slots=1\nn1 slots=1\nn2 slots=1\n' >hosts012
printf 'n1 slots=1\nn2 slots=1\nn3 slots=1\n' >hosts123
printf 'n2 slots=1\nn3 slots=1\n' >hosts23
"$RINGMASTER" run job.yaml --run-dir "$WORK/ref" >ref.txt 2>&1 || { cat ref.txt; fail "the reference run failed"; }
ref=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["weights_digest"])' "$WORK/ref/summary.json")

digest_is_ref() { # digest_is_ref RUN
  "$PYTHON" - "$1" "$ref" <<'PY'
import json, sys
s = json.load(open(f"{sys.argv[1]}/summary.json"))
assert s["weights_digest"] == sys.argv[2], (s["weights_digest"], sys.argv[2])
PY
}

# 1. the coordinator's host dies, ringmaster run lives on n3
on n3 "$RINGMASTER" run job.yaml --run-dir "$WORK/a" --set launch.hostfile="$WORK/hosts012" >a.txt 2>&1 &
runner=$!
killed_at=$(kill_when "$WORK/a" 120 n0 --silent)
wait $runner || { cat a.txt; fail "the run did not recover from losing the coordinator's host"; }
expect_in a.txt "host n0 was lost: mpirun lost its daemon there (it ran the coordinator (rank 0))"
expect_in a.txt "host n0 is left out from now on: 2 workers on 2 hosts"
digest_is_ref "$WORK/a"
"$PYTHON" - "$WORK/a" "$killed_at" <<'PY'
import json, sys
run, killed_at = sys.argv[1], float(sys.argv[2])
restarts = [json.loads(l) for l in open(f"{run}/restarts.jsonl")]
assert len(restarts) == 1 and "host n0 was lost" in restarts[0]["cause"], restarts
named_s = restarts[0]["time"] - killed_at
assert named_s < 10, named_s  # within fault.hang_timeout_s
s = json.load(open(f"{run}/summary.json"))
print(f"1. n0 (coordinator) cut off: named within {max(named_s, 0):.0f} s (whole seconds), resumed on n1+n2 from "
      f"step {s['resumed_from_step']}, weights as never interrupted")
PY

# 2. the coordinator's host was ringmaster run's too
RINGMASTER_LOCK_LEASE_S=4 on n1 "$RINGMASTER" run job.yaml --run-dir "$WORK/b" \
  --set launch.hostfile="$WORK/hosts123" >b.txt 2>&1 &
runner=$!
killed_at=$(kill_when "$WORK/b" 120 n1 --silent)
wait $runner 2>/dev/null || true # its relay connection ends with n1
pidns() { stat -L -c %i "/proc/$(cat "$RINGMASTER_CLUSTER_DIR/$1.pid")/ns/pid"; }
survivors="$(pidns n2)|$(pidns n3)"
left() { # the job's processes still on n2 and n3 (seen from here, where every host's are)
  ps -e -o pidns=,comm= | grep -cE "^ *($survivors) +(ringmaster-work|orted)" || true
}
for ((i = 0; i < 450; i++)); do
  [ "$(left)" -eq 0 ] && break
  sleep 0.1
done
gone_s=$("$PYTHON" -c "import time; print(f'{time.time() - $killed_at:.1f}')")
[ "$(left)" -eq 0 ] || { ps -e -o pid,pidns,etimes,args | grep -E "^ *[0-9]+ +($survivors) "; fail "the job's processes on n2 and n3 outlived their mpirun's host by $gone_s s"; }
# Bounded: Open MPI's daemons notice their mpirun is gone within ~3/4 of
# fault.hang_timeout_s by TCP keepalive (while their connection is idle),
# the workers give up on a silent coordinator after fault.hang_timeout_s
# (1.5x inside a gradient reduction) and their daemons end with them; a
# loaded machine adds its own delays
"$PYTHON" -c "import sys; sys.exit(0 if $gone_s < 30 else 1)" || fail "the workers took $gone_s s to end (fault.hang_timeout_s 10)"
sleep 4 # the dead host's lease expires
on n2 "$RINGMASTER" run job.yaml --run-dir "$WORK/b" --set launch.hostfile="$WORK/hosts23" >b2.txt 2>&1 ||
  { cat b2.txt; fail "the run from n2 did not resume"; }
expect_in b2.txt "took over the stale lock of the run directory $WORK/b: its lease expired"
expect_in b2.txt "resuming from $WORK/b/checkpoints/step-00000"
digest_is_ref "$WORK/b"
echo "2. n1 (coordinator and ringmaster run) cut off: the job on n2 and n3 ended within $gone_s s;" \
  "resumed from n2 at $(grep -o 'checkpoints/step-[0-9]*' b2.txt | head -1 | cut -d/ -f2) with the weights as never interrupted"
echo "coordinator_loss: ok ($(($(date +%s) - t0)) s)"
