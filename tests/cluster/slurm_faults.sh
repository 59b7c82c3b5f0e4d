# Slurm's faults across nodes, on a real Slurm over two namespace hosts
# (scripts/cluster/slurm-up.sh), each compared with the same 2-worker job
# run without Slurm and never interrupted:
#  1. preemption: a 2-node batch job sent USR1 (as Slurm does before the
#     time limit) checkpoints, requeues itself, and the requeued job
#     resumes on both nodes to the uninterrupted weights, bit for bit;
#  2. node failure: host n1 dies mid-job (kill-host.sh: its slurmd and
#     everything on it). With --no-kill Slurm keeps the job; ringmaster run
#     names the node and the ranks it ran, leaves it out and restarts from
#     the newest checkpoint on n0 alone with the same 2 workers, and the job
#     ends COMPLETED with the uninterrupted weights.
source "$(dirname "$0")/lib.sh"
slurm_up 2 --slots 2

mlp_job job.yaml 300

# 1. preemption across nodes
job=$(sbatch_job --nodes=2 --ntasks=3 "$WORK/pre" "$WORK/job.yaml")
# the reference, while the job starts
"$RINGMASTER" run job.yaml --workers 2 --run-dir "$WORK/ref" >ref.txt 2>&1 || { cat ref.txt; fail "the reference run failed"; }
checkpoint_past "$WORK/pre" 100 "$job"
echo "$(date +%T) job $job past step 100: USR1"
on n0 scancel --batch --signal=USR1 "$job"
state=$(wait_end "$job")
echo "$(date +%T) job $job ended $state"
out=slurm-$job.out
[ "$state" = COMPLETED ] || { cat "$out"; fail "the preempted job ended $state"; }
expect_in "$out" "ringmaster exited with status 0"
expect_in "$out" "checkpointed; requeueing job $job"
expect_in "$out" "restart 1, 2 workers"
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

# 2. node failure: n1 dies mid-job
job=$(sbatch_job --no-kill --nodes=2 --ntasks=3 "$WORK/lost" "$WORK/job.yaml")
checkpoint_past "$WORK/lost" 100 "$job"
echo "$(date +%T) job $job past step 100: killing n1"
"$CLUSTER/kill-host.sh" n1
killed_at=$(date +%s.%N)
state=$(wait_end "$job")
echo "$(date +%T) job $job ended $state"
out=slurm-$job.out
[ "$state" = COMPLETED ] || [ "$state" = COMPLETING ] || { cat "$out"; fail "the job that lost n1 ended $state"; }
expect_in "$out" "ringmaster exited with status 0"
expect_in "$out" "host n1 was lost: mpirun lost its daemon there (it ran worker 1 (rank 2))"
expect_in "$out" "host n1 is left out from now on: 2 workers on 1 host"
"$PYTHON" - "$WORK" "$job" "$killed_at" <<'PY'
import json, sys
work, job, killed_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
restarts = [json.loads(l) for l in open(f"{work}/lost/restarts.jsonl")]
assert len(restarts) == 1 and "host n1 was lost" in restarts[0]["cause"], restarts
named_s = restarts[0]["time"] - killed_at
assert named_s < 20, named_s  # within fault.hang_timeout_s
hosts = sorted(l.split()[2] for l in open(f"{work}/lost/ranks.txt"))
assert hosts == ["n0", "n0", "n0"], hosts
ref = json.load(open(f"{work}/ref/summary.json"))
lost = json.load(open(f"{work}/lost/summary.json"))
assert lost["weights_digest"] == ref["weights_digest"], (lost["weights_digest"], ref["weights_digest"])
print(f"job {job} lost n1: named within {max(named_s, 0):.0f} s, resumed on n0 from step "
      f"{lost['resumed_from_step']}, weights {lost['weights_digest']} as never interrupted")
PY
echo "slurm_faults: ok"
