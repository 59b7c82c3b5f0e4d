# ZeRO-1 (train.zero 1) over the MPI transport: each worker holds the
# optimizer state of its slice [n*r/N, n*(r+1)/N) only, gradients are
# reduce-scattered and parameters all-gathered. Against plain data
# parallel on 2 and 3 workers (and 4) it gives the same loss curve and weights up
# to float rounding; on 3 workers twice the same bits; it reports 1/N of
# the unsharded optimizer state (and the shared-memory path, which also
# updates slices, the same figure); a run stopped mid-epoch (SIGUSR1, exit
# 75) resumes to the uninterrupted ZeRO-1 weights, and on another worker
# count, or without ZeRO, continues with the same batches. The tiny GPT has
# 36,736 parameters, not a multiple of 3 (checked below), so 3
# workers hold uneven slices.
source "$(dirname "$0")/lib.sh"
MPI="--set launch.cpu_reduce=mpi"
# 2 workers without clipping: the norm, a sum of the slices' squares under
# ZeRO-1, is then not used, and the weights must be the same bits
run dp2 --workers 2 $MPI --set train.steps=30 --set train.grad_clip=0
run z2 --workers 2 $MPI --set train.steps=30 --set train.grad_clip=0 --set train.zero=1
# 3 workers, clipped, with a checkpoint of the final weights to compare
run dp3 --workers 3 $MPI --set train.steps=30 --set checkpoint.every_steps=30
# (z3 also draws the timeline of two steps: reduce-scatter buckets, all-gather)
run z3 --workers 3 $MPI --set train.steps=30 --set checkpoint.every_steps=30 --set train.zero=1 \
  --set observe.trace_steps=[5,6] --set train.bucket_mb=0.05
run z3-again --workers 3 $MPI --set train.steps=30 --set train.zero=1
run shm3 --workers 3 --set launch.cpu_reduce=shm --set train.steps=30 --set train.zero=1
run z4 --workers 4 $MPI --set train.steps=30 --set train.zero=1
expect_in "$WORK/z3.log" "ZeRO-1"
expect_in "$WORK/z3.log" "optimizer state:"
for name in dp3 z3; do
  "$RM" ckpt export "$WORK/$name" --format safetensors "$WORK/$name.safetensors" >"$WORK/$name.export.log" 2>&1 ||
    { cat "$WORK/$name.export.log"; fail "$name: ckpt export failed"; }
done

# the doctor times ZeRO-1's reduce-scatter and all-gather as phases of the step
"$RM" doctor "$WORK/job.yaml" --workers 3 $MPI --set train.zero=1 --run-dir "$WORK/doctor" >"$WORK/doctor.log" 2>&1 ||
  { cat "$WORK/doctor.log"; fail "doctor failed"; }
expect_in "$WORK/doctor.log" "gradient reduce-scatter + norm"
expect_in "$WORK/doctor.log" "parameter all-gather"
expect_in "$WORK/doctor.log" "+ all-gather"

# stopped mid-epoch and resumed, on 3 workers (ZeRO-1), on 2 (ZeRO-1) and
# on 2 without ZeRO, all from the same checkpoint
"$RM" run "$WORK/job.yaml" --run-dir "$WORK/stopped" --workers 3 $MPI --set train.zero=1 --set train.steps=200 \
  --set checkpoint.every_steps=1000 >"$WORK/first.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -f "$WORK/stopped/metrics.jsonl" ] && [ "$(wc -l <"$WORK/stopped/metrics.jsonl")" -ge 15 ] && break
  sleep 0.05
done
kill -USR1 "$pid"
set +e
wait "$pid"
status=$?
set -e
[ "$status" -eq 75 ] || { cat "$WORK/first.log"; fail "the stopped run exited $status, not 75"; }
ls "$WORK/stopped/checkpoints" | grep -q step- || fail "no emergency checkpoint"
cp -a "$WORK/stopped" "$WORK/stopped-z2"
cp -a "$WORK/stopped" "$WORK/stopped-dp2"
resume() { # resume NAME OPTIONS...
  local name=$1
  shift
  "$RM" run "$WORK/job.yaml" --run-dir "$WORK/$name" --set train.steps=200 --set checkpoint.every_steps=1000 $MPI \
    "$@" >"$WORK/$name.resume.log" 2>&1 || { cat "$WORK/$name.resume.log"; fail "$name: resume failed"; }
}
resume stopped --workers 3 --set train.zero=1
resume stopped-z2 --workers 2 --set train.zero=1
resume stopped-dp2 --workers 2
run straight200 --workers 3 $MPI --set train.zero=1 --set train.steps=200
a=$(digest_of straight200)
b=$(digest_of stopped)
[ "$a" = "$b" ] || fail "the resumed ZeRO-1 run ended with weights $b, the uninterrupted one with $a"

"$PYTHON" - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
def curve(name):
    return [json.loads(line) for line in open(f"{work}/{name}/metrics.jsonl")]
def summary(name):
    return json.load(open(f"{work}/{name}/summary.json"))
def worst(a, b):
    return max(abs(x["loss"] - y["loss"]) / x["loss"] for x, y in zip(a, b))
n = summary("dp2")["parameters"]
assert n % 3 != 0, f"{n} parameters divide by 3: the uneven slices go untested"
for dp, z in (("dp2", "z2"), ("dp3", "z3"), ("dp3", "shm3"), ("dp3", "z4")):
    a, b = curve(dp), curve(z)
    assert len(a) == len(b) == 30, (dp, z, len(a), len(b))
    d = worst(a, b)
    print(f"{dp} vs {z}: largest relative loss difference {d:.2e}")
    assert d < 1e-4, f"{dp} vs {z}: loss curves differ by {d:.2e}"
    assert [x["batch_digest"] for x in a] == [x["batch_digest"] for x in b], f"{z}: other batches"
# two workers: a + b is one rounding whoever adds, so the very same bits
for name in ("dp2", "z2"):
    assert max(x["grad_norm"] for x in curve(name)) > 0

assert summary("dp2")["weights_digest"] == summary("z2")["weights_digest"], "ZeRO-1 on 2 workers changed the weights"
a, b = summary("z3")["weights_digest"], summary("z3-again")["weights_digest"]
assert a == b, f"two 3-worker ZeRO-1 runs ended with different weights: {a} vs {b}"
# the 3-worker weights, tensor by tensor, up to float rounding
import array, struct
def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for k, v in header.items():
        if k != "__metadata__":
            b, e = v["data_offsets"]
            out[k] = array.array("f", raw[8 + n + b:8 + n + e])
    return out
a, b = tensors(f"{work}/dp3.safetensors"), tensors(f"{work}/z3.safetensors")
assert a.keys() == b.keys()
worst_w = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
print(f"dp3 vs z3: largest weight difference {worst_w:.2e}")
assert worst_w < 1e-5, worst_w
d = json.load(open(f"{work}/doctor/doctor.json"))
assert d["zero"] == 1 and d["step_model"]["gather_s"] > 0, d["step_model"]
assert all(r["step_gather_s"] > 0 for r in d["ranks"]), d["ranks"]
# the timeline: every bucket reduce-scattered, then one all-gather of all
# the weights, after the buckets, on every worker and traced step
events = [e for e in json.load(open(f"{work}/z3/trace.json"))["traceEvents"] if e["ph"] == "X"]
for pid in (1, 2, 3):
    for step in (5, 6):
        s = [e for e in events if e["pid"] == pid and e["args"]["step"] == step]
        rs = [e for e in s if e["cat"] == "reducescatter"]
        ag = [e for e in s if e["cat"] == "allgather"]
        assert rs and not [e for e in s if e["cat"] == "allreduce"], (pid, step, s)
        assert sum(e["args"]["bytes"] for e in rs) == 4 * n, rs
        assert len(ag) == 1 and ag[0]["name"] == "all-gather" and ag[0]["args"]["bytes"] == 4 * n, ag
        assert ag[0]["ts"] >= max(e["ts"] + e["dur"] for e in rs) - 1, (ag, rs)
# optimizer state: AdamW's two moments, 8 bytes a parameter, over N
full = summary("dp3")["optimizer_state_bytes_per_worker"]
assert full == 8 * n, (full, n)
for name, workers in (("z2", 2), ("z3", 3), ("shm3", 3), ("z4", 4)):
    got = summary(name)["optimizer_state_bytes_per_worker"]
    want = 8 * -(-n // workers)  # the largest slice
    print(f"{name}: {got} optimizer state bytes per worker, unsharded {full}")
    assert got == want, (name, got, want)
    assert curve(name)[0]["optimizer_state_bytes_per_worker"] == got
# resumed from the same ZeRO-1 checkpoint on other worker counts, with and
# without ZeRO: the same batches as the uninterrupted run, and its loss
# curve up to rounding
straight = curve("straight200")
for name in ("stopped", "stopped-z2", "stopped-dp2"):
    s = summary(name)
    assert s["resumed_from_step"] > 0, (name, s["resumed_from_step"])
    tail = curve(name)[-(200 - s["resumed_from_step"]):]
    ref = straight[s["resumed_from_step"]:]
    assert [x["batch_digest"] for x in tail] == [x["batch_digest"] for x in ref], f"{name}: other batches"
    d = worst(ref, tail)
    print(f"straight200 vs resumed {name}: largest relative loss difference {d:.2e}")
    assert d < 1e-3, (name, d)
PY
echo "gpt zero: ok"
