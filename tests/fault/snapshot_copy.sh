# A checkpoint's snapshot is the same bytes wherever the worker copies it:
# in the update's pass over the state (debug.snapshot_defer 0) or piece by
# piece inside its waits on the other worker in the next step, the rest
# before the next update (1), on the shared-memory reduction (each worker
# updates its slice) and on the MPI transport (each updates every
# parameter and checkpoints a slice), and under ZeRO-1. Every checkpoint
# of the run is kept and compared file by file (the manifests' checksums);
# a run resumed from a snapshot copied in the waits ends on the same
# weights as the uninterrupted run. A checkpoint asked for after every
# step does not stop the run.
source "$(dirname "$0")/lib.sh"

# checksums RUN_DIR: "step-N worker checksum" for every committed checkpoint
checksums() {
  local m
  for m in "$1"/checkpoints/step-*/manifest.json; do
    grep -o '"worker": [0-9]*, .*"checksum": "[0-9a-f]*"' "$m" | sed "s|^|$(basename "$(dirname "$m")") |;s/, \"begin.*\"checksum\"//"
  done
}

for transport in "shm" "mpi" "mpi zero"; do
  set -- --set launch.cpu_reduce="${transport% zero}" --set checkpoint.keep=100
  [ "$transport" = "mpi zero" ] && set -- "$@" --set train.zero=1
  tag=${transport// /-}
  for defer in 0 1; do
    run_job "$WORK/$tag-$defer" "$@" --set debug.snapshot_defer=$defer >"$WORK/$tag-$defer.log" 2>&1 ||
      { cat "$WORK/$tag-$defer.log"; fail "$transport, snapshot_defer $defer: the run failed"; }
  done
  checksums "$WORK/$tag-0" >"$WORK/$tag-0.sums"
  checksums "$WORK/$tag-1" >"$WORK/$tag-1.sums"
  [ "$(wc -l <"$WORK/$tag-0.sums")" -eq 12 ] || { cat "$WORK/$tag-0.sums"; fail "$transport: expected 6 checkpoints x 2 files"; }
  diff "$WORK/$tag-0.sums" "$WORK/$tag-1.sums" ||
    fail "$transport: a snapshot copied in the waits differs from one copied in the update's pass"
  [ "$(digest_of "$WORK/$tag-0")" = "$(digest_of "$WORK/$tag-1")" ] || fail "$transport: final weights differ"
done

# summary.json's stall is per checkpoint: every step's stall (a deferred
# copy's rest lands in the step after its checkpoint) over the 6 checkpoints
for run in shm-0 shm-1 mpi-1; do
  python3 - "$WORK/$run" <<'PY' || fail "$run: checkpoint_stall_mean_s is not the stalls' sum over the checkpoints"
import json, sys
run = sys.argv[1]
rows = [json.loads(l) for l in open(run + "/metrics.jsonl") if l.startswith('{"step"')]
total = sum(r.get("ckpt_stall_s_max", 0) for r in rows)
s = json.load(open(run + "/summary.json"))
mean, most = s["checkpoint_stall_mean_s"], s["checkpoint_stall_max_s"]
print(f"{run}: stalls sum {total * 1e3:.3f} ms over 6 checkpoints; summary mean {mean * 1e3:.3f} ms, max {most * 1e3:.3f} ms")
sys.exit(not (abs(mean - total / 6) <= 1e-6 + 1e-4 * mean and most >= mean > 0))
PY
done

# a checkpoint after every step, faster than they are written: the run goes
# on (each further one waits for room, said once) to the same weights as
# without periodic checkpoints, and ends on its last step's
every=$WORK/every-step
run_job "$every" --set train.steps=60 --set checkpoint.every_steps=1 >"$WORK/every-step.log" 2>&1 ||
  { cat "$WORK/every-step.log"; fail "checkpoint.every_steps 1: the run failed"; }
grep -q "checkpoints are asked for faster than they are written" "$WORK/every-step.log" ||
  fail "checkpoint.every_steps 1: no word that checkpoints wait"
n=$(grep -c '"checkpoint"' "$every/events.jsonl" || true)
[ "$n" -ge 10 ] || fail "checkpoint.every_steps 1: only $n checkpoints in 60 steps"
"$RM" ckpt list "$every" | grep -q "^step-00000060 .*(latest)" || fail "checkpoint.every_steps 1: the last step's is not the latest"
run_job "$WORK/no-periodic" --set train.steps=60 --set checkpoint.every_steps=0 >"$WORK/no-periodic.log" 2>&1 ||
  { cat "$WORK/no-periodic.log"; fail "the run without periodic checkpoints failed"; }
[ "$(digest_of "$every")" = "$(digest_of "$WORK/no-periodic")" ] || fail "checkpoint.every_steps 1 changed the weights"

# a worker killed after step 120's commit: the supervisor resumes from that
# snapshot, copied in the waits, and ends on the uninterrupted weights
dir=$WORK/resumed
start_job "$dir" "$WORK/resumed.log" --set launch.cpu_reduce=shm --set debug.snapshot_defer=1
wait_for "$dir/ranks.txt"
wait_for "$dir/checkpoints/step-00000120/manifest.json"
kill -9 "$(pid_of 1 "$dir")"
wait_job
[ "$JOB_STATUS" -eq 0 ] || { cat "$WORK/resumed.log"; fail "the supervisor did not complete the run"; }
from=$(json_field "$dir/summary.json" resumed_from_step)
[ "$from" -ge 120 ] && [ "$from" -lt 240 ] || fail "resumed from step $from, not from a periodic checkpoint"
[ "$(digest_of "$dir")" = "$(digest_of "$WORK/shm-0")" ] || fail "resumed from a snapshot copied in the waits: other weights"
echo "snapshot_copy: ok (6 checkpoints each on shm, mpi and mpi+zero: the same bytes copied in the update's pass or in the waits; $n checkpoints in 60 steps asked for after each; resumed from step $from to the same weights)"
