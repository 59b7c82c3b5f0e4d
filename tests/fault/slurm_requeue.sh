# A real single-node Slurm: sbatch the template, signal the batch shell
# with USR1 mid-run (as Slurm does before the time limit), and check that
# the job checkpointed, was requeued, resumed from its checkpoint and
# finished with the expected accuracy.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$HERE/../.." && pwd)
"$ROOT/scripts/slurm/single-node.sh" up >"$WORK/slurm-up.log" 2>&1 || { cat "$WORK/slurm-up.log"; fail "cannot start Slurm"; }
# stop Slurm afterwards unless it was already running
if ! grep -q "already up" "$WORK/slurm-up.log"; then
  trap 'status=$?; "$ROOT/scripts/slurm/single-node.sh" down; [ $status -eq 0 ] && rm -rf "$WORK"' EXIT
fi
export SLURM_CONF=${SLURM_SANDBOX:-/tmp/ringmaster-slurm}/etc/slurm.conf
dir=$WORK/run
job=$(RINGMASTER=$RM RINGMASTER_RUN_DIR=$dir sbatch --parsable --chdir="$WORK" --output="$WORK/slurm-%j.out" \
  --export=ALL "$ROOT/scripts/slurm/ringmaster.sbatch" "$HERE/job.yaml" --set data.dir="$DATA" \
  --set train.steps=8000)
echo "submitted job $job"
# checkpoints rotate (keep 3), so wait for `latest` to pass step 200
past_200() { [ -f "$dir/checkpoints/latest" ] && [ $((10#$(sed 's/step-//' "$dir/checkpoints/latest"))) -ge 200 ]; }
job_state() { scontrol show job "$job" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
for i in $(seq 1 600); do
  past_200 && break
  case $(job_state) in
    PENDING | RUNNING | CONFIGURING) sleep 0.1 ;;
    *) past_200 ||
         { cat "$WORK"/slurm-*.out; fail "job ended $(job_state) before its first checkpoint"; } ;;
  esac
done
scancel --batch --signal=USR1 "$job"
state=""
for i in $(seq 1 300); do
  state=$(job_state)
  [ "$state" = COMPLETED ] || [ "$state" = FAILED ] || [ "$state" = CANCELLED ] && break
  sleep 1
done
out=$WORK/slurm-$job.out
[ "$state" = COMPLETED ] || { cat "$out"; fail "job ended $state"; }
restarts=$(scontrol show job "$job" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
[ "$restarts" -ge 1 ] || { cat "$out"; fail "the job was not requeued"; }
grep -q "checkpointed; requeueing job $job" "$out" || fail "the batch script did not requeue"
grep -q '"status":"preempted"' "$dir/events.jsonl" || fail "no preempted end in events.jsonl"
grep -q '"event":"resume"' "$dir/events.jsonl" || fail "the requeued job did not resume"
from=$(json_field "$dir/summary.json" resumed_from_step)
[ "$from" -ge 200 ] || fail "resumed from step $from"
acc=$(json_field "$dir/summary.json" test_accuracy)
awk -v a="$acc" 'BEGIN { exit !(a >= 0.80) }' || fail "accuracy $acc below 0.80"
echo "slurm_requeue: ok (job $job requeued $restarts time(s), resumed from step $from, accuracy $acc)"
