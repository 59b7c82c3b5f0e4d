# Slurm's faults across nodes, on a real Slurm over two namespace hosts
# (scripts/cluster/slurm-up.sh), each compared with the same 2-worker job
# run without Slurm and never interrupted:
#  1. preemption: a 2-node batch job sent USR1 (as Slurm does before the
#     time limit) checkpoints, requeues itself, and the requeued job
#     resumes on both nodes to the uninterrupted weights, bit for bit;
#  2. node failure: n1 is set DOWN (scontrol: Slurm ends what the job ran
#     there), then, 3., n1 dies (kill-host.sh: its slurmd and everything on
#     it). With --no-kill Slurm keeps the job; ringmaster run names the node
#     and the rank it ran, leaves it out and restarts from the newest
#     checkpoint on n0 alone with the same 2 workers, and the job ends with
#     the uninterrupted weights.
source "$(dirname "$0")/lib.sh"
slurm_up 2 --slots 2

mlp_job job.yaml 400

# 1. preemption across nodes
job=$(sbatch_job --nodes=2 --ntasks=3 "$WORK/pre" "$WORK/job.yaml")
# the reference, while the job runs
"$RINGMASTER" run job.yaml --workers 2 --run-dir "$WORK/ref" >ref.txt 2>&1 &
ref=$!
checkpoint_past "$WORK/pre" 50 "$job"
echo "$(date +%T) job $job past step 50: USR1"
on n0 scancel --batch --signal=USR1 "$job"
state=$(wait_end "$job")
echo "$(date +%T) job $job ended $state"
out=slurm-$job.out
[ "$state" = COMPLETED ] || [ "$state" = COMPLETING ] || { cat "$out"; fail "the preempted job ended $state"; }
expect_in "$out" "ringmaster exited with status 0"
expect_in "$out" "checkpointed; requeueing job $job"
expect_in "$out" "restart 1, 2 workers"
wait $ref || { cat ref.txt; fail "the reference run failed"; }
restarts=$(on n0 scontrol show job "$job" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
[ "$restarts" -ge 1 ] || { cat "$out"; fail "job $job was not requeued"; }
"$PYTHON" - "$WORK" "$job" <<'PY'
import json, sys
work, job = sys.argv[1], sys.argv[2]
events = [json.loads(l) for l in open(f"{work}/pre/events.jsonl")]
assert any(e.get("status") == "preempted" for e in events), "no preempted end in events.jsonl"
assert any(e.get("event") == "resume" for e in events), "the requeued job did not resume"
hosts = {l.split()[1]: l.split()[2] for l in open(f"{work}/pre/ranks.txt")}
assert hosts == {"coordinator": "n0", "0": "n0", "1": "n1"}, hosts
ref = json.load(open(f"{work}/ref/summary.json"))
pre = json.load(open(f"{work}/pre/summary.json"))
assert pre["weights_digest"] == ref["weights_digest"], (pre["weights_digest"], ref["weights_digest"])
print(f"job {job} preempted: requeued, resumed on n0+n1 from step {pre['resumed_from_step']}, "
      f"weights {pre['weights_digest']} as never interrupted")
PY

# node_lost NAME CMD...: a 2-node job (--no-kill: Slurm keeps it when a
# node fails) loses n1 by CMD once it has checkpointed past step 50;
# ringmaster run names n1 and the rank it ran, and finishes on n0 alone
# with the same 2 workers and the uninterrupted weights.
node_lost() {
  local name=$1 job state out lost_at
  shift
  job=$(sbatch_job --no-kill --nodes=2 --ntasks=3 "$WORK/$name" "$WORK/job.yaml")
  checkpoint_past "$WORK/$name" 50 "$job"
  echo "$(date +%T) job $job past step 50: $*"
  "$@"
  lost_at=$(date +%s.%N)
  state=$(wait_end "$job")
  echo "$(date +%T) job $job ended $state"
  out=slurm-$job.out
  [ "$state" = COMPLETED ] || [ "$state" = COMPLETING ] || { cat "$out"; fail "the job that lost n1 ended $state"; }
  expect_in "$out" "ringmaster exited with status 0"
  # named by mpirun (it lost its daemon there) or, when mpirun ends without
  # saying (Slurm ended the step on n1 first), by Slurm
  grep -qE "host n1 was lost: (mpirun lost its daemon there|Slurm took it out of job $job) \(it ran worker 1 \(rank 2\)\)" "$out" ||
    { cat "$out"; fail "n1 and the rank it ran are not named in $out"; }
  expect_in "$out" "host n1 is left out from now on: 2 workers on 1 host"
  "$PYTHON" - "$WORK/$name" "$job" "$lost_at" "$*" <<'PY'
import json, os, sys
run, job, lost_at, how = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
restarts = [json.loads(l) for l in open(f"{run}/restarts.jsonl")]
assert len(restarts) == 1 and "host n1 was lost" in restarts[0]["cause"], restarts
named_s = restarts[0]["time"] - lost_at
assert named_s < 20, named_s  # within fault.hang_timeout_s
hosts = sorted(l.split()[2] for l in open(f"{run}/ranks.txt"))
assert hosts == ["n0", "n0", "n0"], hosts
ref = json.load(open(f"{os.path.dirname(run)}/ref/summary.json"))
lost = json.load(open(f"{run}/summary.json"))
assert lost["weights_digest"] == ref["weights_digest"], (lost["weights_digest"], ref["weights_digest"])
print(f"job {job} lost n1 ({how}): named ({restarts[0]['cause'].split(':')[1].split('(')[0].strip()}) within {max(named_s, 0):.0f} s, resumed on n0 from step "
      f"{lost['resumed_from_step']}, weights {lost['weights_digest']} as never interrupted")
PY
}

# 2. n1 set DOWN: Slurm ends the job's step there (its slurmd lives on)
node_lost down on n0 scontrol update nodename=n1 state=down reason=test
# its slurmd answers, so it is back (ReturnToService=2)
for ((i = 0; i < 150; i++)); do
  [ "$(on n0 sinfo -h -n n1 -o %T)" = idle ] && break
  sleep 0.2
done
[ "$(on n0 sinfo -h -n n1 -o %T)" = idle ] || { on n0 sinfo -N; fail "n1 did not come back after state=down"; }
# 3. n1 dies (kill-host.sh: a power cut, its slurmd and everything on it)
node_lost killed "$CLUSTER/kill-host.sh" n1
echo "slurm_faults: ok"
