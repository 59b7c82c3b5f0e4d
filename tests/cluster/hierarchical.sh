# Two-stage gradient reduction over hosts: 4 workers, 2 on n0 and 2 on n1
# (the coordinator on n0 as well), sum through each host's shared memory,
# then a chain between hosts (launch.cpu_reduce auto picks it). The
# workers' local ranks come from their real host (0 and 1 on each), the
# timeline and the doctor show the stage inside the host and the one
# between hosts apart, its checkpoint resumes on one host, and the weights and every step's gradient norm (clipping on, so
# the norm steers the weights) are bit for bit those of the same job with
# its 4 workers on one host, summed through shared memory alone.
source "$(dirname "$0")/lib.sh"
up 2 --slots 3

# ranks 0-2 (coordinator, workers 0 and 1) on n0, ranks 3-4 (workers 2 and 3) on n1
printf 'n0 slots=3\nn1 slots=2\n' >hostfile
cat >job.yaml <<YAML
model:
  hidden: [128]
data:
  dir: $DATA
  eval_split: ""
train:
  global_batch: 128
  steps: 100
  optimizer: adamw
  lr: 0.002
  grad_clip: 0.5
  seed: 1
launch:
  workers: 4
checkpoint:
  every_steps: 50
fault:
  max_restarts: 0
observe:
  progress_every_steps: 50
  trace_steps: [60, 61]
YAML
t0=$(date +%s.%N)
on n0 "$RINGMASTER" run job.yaml --run-dir "$WORK/hier" --set launch.hostfile="$WORK/hostfile" >hier.txt 2>&1 ||
  { cat hier.txt; fail "the 2-host run failed"; }
t1=$(date +%s.%N)
"$RINGMASTER" run job.yaml --run-dir "$WORK/one" >one.txt 2>&1 || { cat one.txt; fail "the 1-host run failed"; }
t2=$(date +%s.%N)

expect_in hier.txt "gradients summed hierarchically: 2 hosts x 2 workers"
expect_in one.txt "gradients summed through node-shared memory by 4 workers"
for w in "0 is local rank 0 of 2 on host 0 of 2 (n0)" "1 is local rank 1 of 2 on host 0 of 2 (n0)" \
  "2 is local rank 0 of 2 on host 1 of 2 (n1)" "3 is local rank 1 of 2 on host 1 of 2 (n1)"; do
  expect_in hier.txt "hierarchical reduction: worker $w"
done

# The checkpoint the hierarchical run wrote at step 50 (each worker its
# optimizer slice) resumes on one host: 4 workers reach the same weights,
# 2 workers finish the job.
for w in 4 2; do
  cp -a "$WORK/hier" "$WORK/resume$w"
  rm -rf "$WORK/resume$w/checkpoints/step-00000100" "$WORK/resume$w/summary.json"
  printf 'step-00000050\n' >"$WORK/resume$w/checkpoints/latest"
  "$RINGMASTER" run job.yaml --run-dir "$WORK/resume$w" --set launch.workers=$w >resume$w.txt 2>&1 ||
    { cat resume$w.txt; fail "resuming the hierarchical run's checkpoint on $w workers failed"; }
  expect_in resume$w.txt "(step 50 of 100, written by 4 workers, now $w; generation 2)"
done

# The doctor over the same placement times the reduction in its two
# stages (its resolved config goes to TMPDIR, which every host must see).
on n0 env TMPDIR="$WORK" "$RINGMASTER" doctor job.yaml --set launch.hostfile="$WORK/hostfile" >doctor.txt 2>&1 ||
  { cat doctor.txt; fail "ringmaster doctor over two hosts failed"; }
expect_in doctor.txt "reduction alone (shm+mpi)"
expect_in doctor.txt "  of which sum in shared memory"
expect_in doctor.txt "  of which chain between hosts"
grep -E "^reduction alone|^  of which" doctor.txt

# An explicit request the placement cannot meet is refused, naming why:
# 3 workers over 2 hosts are 2 + 1.
on n0 "$RINGMASTER" run job.yaml --run-dir "$WORK/uneven" --set launch.hostfile="$WORK/hostfile" \
  --set launch.workers=3 --set train.global_batch=96 --set launch.cpu_reduce=hierarchical --set train.steps=2 \
  >uneven.txt 2>&1 &&
  { cat uneven.txt; fail "an uneven placement was accepted for launch.cpu_reduce hierarchical"; }
expect_in uneven.txt "launch.cpu_reduce is hierarchical but the 2 hosts hold different numbers of workers (1 to 2)"

"$PYTHON" - "$WORK" "$t0" "$t1" "$t2" <<'PY'
import json, sys
work, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
ranks = [l.split() for l in open(f"{work}/hier/ranks.txt")]
hosts = {r[1]: r[2] for r in ranks}
assert hosts == {"coordinator": "n0", "0": "n0", "1": "n0", "2": "n1", "3": "n1"}, ranks
hier = json.load(open(f"{work}/hier/summary.json"))
one = json.load(open(f"{work}/one/summary.json"))
assert hier["weights_digest"] == one["weights_digest"], (hier["weights_digest"], one["weights_digest"])
resumed = json.load(open(f"{work}/resume4/summary.json"))
assert resumed["weights_digest"] == one["weights_digest"], (resumed["weights_digest"], one["weights_digest"])
resumed2 = json.load(open(f"{work}/resume2/summary.json"))
assert (resumed2["steps"], resumed2["workers"], resumed2["resumed_from_step"]) == (100, 2, 50), resumed2

def norms(run):
    out = {}
    for line in open(f"{work}/{run}/metrics.jsonl"):
        m = json.loads(line)
        if "grad_norm" in m and "step" in m:
            out[m["step"]] = m["grad_norm"]
    return out
nh, no = norms("hier"), norms("one")
assert nh and nh == no, [(s, nh.get(s), no.get(s)) for s in sorted(no) if nh.get(s) != no.get(s)][:5]
assert any(v > 0.5 for v in no.values()), "clipping never acted: the test would not see a wrong norm"

# the timeline: the sum inside the host and the chain between hosts as
# spans of their own, on every worker; no parameter traffic between hosts
events = [e for e in json.load(open(f"{work}/hier/trace.json"))["traceEvents"] if e["ph"] == "X"]
for pid in (1, 2, 3, 4):
    mine = [e for e in events if e["pid"] == pid and e["args"]["step"] == 60]
    local = [e for e in mine if e["name"] == "sum in shared memory"]
    net = [e for e in mine if e["name"] == "chain between hosts"]
    assert len(local) == 1 and len(net) == 1, (pid, mine)
    assert local[0]["tid"] != net[0]["tid"], (local, net)
    assert not [e for e in mine if e["name"] == "all-gather"], mine
print(f"4 workers on n0+n1 (hierarchical) and on one host (shm): weights {one['weights_digest']} both, "
      f"{len(no)} gradient norms equal; {hier['samples_per_second']:.0f} vs {one['samples_per_second']:.0f} "
      f"samples/s; runs {t1 - t0:.1f} s and {t2 - t1:.1f} s")
PY
echo "hierarchical: ok"
