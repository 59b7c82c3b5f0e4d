# The same job (global batch 96, 100 steps, no evaluation) on 1, 2 and 3
# workers: the global batches are the same samples and the gradients are
# global means, so the loss curves agree up to float rounding; and two runs
# on the same worker count end with bit-identical weights, whether the
# gradients are summed through shared memory (the default on one node) or
# by MPI_Iallreduce (a + b is one rounding whoever adds).
source "$(dirname "$0")/lib.sh"
write_job job.yaml
run() { # run NAME WORKERS [--set k=v ...]
  local name=$1 workers=$2
  shift 2
  "$RINGMASTER" run job.yaml --run-dir "$WORK/$name" --workers "$workers" --set train.global_batch=96 \
    --set train.steps=100 --set 'data.eval_split=""' "$@" >"$name.txt" 2>&1 ||
    { cat "$name.txt"; fail "$name: ringmaster run exited with status $?"; }
}
run w1 1
run w2 2
run w3 3
run w2-again 2
run w2-mpi 2 --set launch.cpu_reduce=mpi

"$PYTHON" - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
def curve(name):
    return [json.loads(line) for line in open(f"{work}/{name}/metrics.jsonl")]
def summary(name):
    return json.load(open(f"{work}/{name}/summary.json"))
one = curve("w1")
assert len(one) == 100, len(one)
assert sum(m["loss"] for m in one[-10:]) < 0.7 * sum(m["loss"] for m in one[:10]), "the loss did not fall"
for name, workers in (("w2", 2), ("w3", 3)):
    other = curve(name)
    assert len(other) == 100, (name, len(other))
    assert summary(name)["workers"] == workers and summary(name)["test_accuracy"] is None, summary(name)
    worst = max(abs(a["loss"] - b["loss"]) / a["loss"] for a, b in zip(one, other))
    assert all(a["lr"] == b["lr"] for a, b in zip(one, other)), f"{name}: learning rates differ"
    print(f"1 vs {workers} workers: largest relative loss difference {worst:.2e}")
    assert worst < 1e-3, f"1 vs {workers} workers: loss curves differ by {worst:.2e} (relative)"
a, b = summary("w2")["weights_digest"], summary("w2-again")["weights_digest"]
assert a == b, f"two 2-worker runs ended with different weights: {a} vs {b}"
assert [m["loss"] for m in curve("w2")] == [m["loss"] for m in curve("w2-again")], "2-worker reruns differ"
c = summary("w2-mpi")["weights_digest"]
assert a == c, f"2 workers: shared-memory and MPI gradient sums ended with different weights: {a} vs {c}"
PY
