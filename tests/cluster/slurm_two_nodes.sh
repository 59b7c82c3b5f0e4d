# A real Slurm on two namespace hosts (scripts/cluster/slurm-up.sh):
# `sbatch --nodes=2` of the project's batch script allocates both nodes,
# mpirun inside the allocation starts ranks on both (Open MPI's Slurm
# launcher: srun starts its daemon on n1), and the job trains to the
# weights, bit for bit, of the same job with the same workers run without
# Slurm on one host.
source "$(dirname "$0")/lib.sh"
slurm_up 2 --slots 2

mlp_job job.yaml 150
# 3 tasks on 2 CPUs a node: the coordinator and worker 0 on n0, worker 1 on n1
job=$(sbatch_job --nodes=2 --ntasks=3 "$WORK/slurm" "$WORK/job.yaml")
"$RINGMASTER" run job.yaml --workers 2 --run-dir "$WORK/plain" >plain.txt 2>&1 || { cat plain.txt; fail "the run without Slurm failed"; }
state=$(wait_end "$job")
[ "$state" = COMPLETED ] || [ "$state" = COMPLETING ] || { cat "slurm-$job.out"; fail "Slurm job $job ended $state"; }
expect_in "slurm-$job.out" "ringmaster exited with status 0"
expect_in "slurm-$job.out" "inside Slurm job $job: mpirun takes nodes and slots from the allocation (3 slots)"
"$PYTHON" - "$WORK" "$job" <<'PY'
import json, sys
work, job = sys.argv[1], sys.argv[2]
ranks = [l.split() for l in open(f"{work}/slurm/ranks.txt")]
hosts = {r[1]: r[2] for r in ranks}
assert hosts == {"coordinator": "n0", "0": "n0", "1": "n1"}, ranks
slurm = json.load(open(f"{work}/slurm/summary.json"))
plain = json.load(open(f"{work}/plain/summary.json"))
assert slurm["weights_digest"] == plain["weights_digest"], (slurm["weights_digest"], plain["weights_digest"])
print(f"Slurm job {job} on n0+n1 and 2 workers without Slurm: weights {plain['weights_digest']} both")
PY
echo "slurm_two_nodes: ok"
