# The GPT on 1, 2 and 3 workers: the loss curves agree up to float
# rounding (the same global batches, gradients averaged over the global
# batch); 3 workers twice give bit-identical weights; gradients summed by
# MPI or through shared memory give the same loss curve; accumulating the
# global batch over 2 micro-steps gives the same curve up to rounding;
# recomputing GELU and LayerNorm in backward (train.recompute 2) gives the
# same weights, bit for bit.
source "$(dirname "$0")/lib.sh"
run w1 --workers 1
run w2 --workers 2
run w3 --workers 3
run w3-again --workers 3
run w3-mpi --workers 3 --set launch.cpu_reduce=mpi
run w2-accum --workers 2 --set train.grad_accum=2
run w2-recompute --workers 2 --set train.recompute=2
"$PYTHON" - "$WORK" <<'PY'
import json, math, sys
work = sys.argv[1]
def curve(name):
    return [json.loads(line) for line in open(f"{work}/{name}/metrics.jsonl")]
def summary(name):
    return json.load(open(f"{work}/{name}/summary.json"))
one = curve("w1")
assert len(one) == 40, len(one)
assert one[-1]["loss"] < 0.8 * one[0]["loss"], ("the loss did not fall", one[0]["loss"], one[-1]["loss"])
assert abs(one[0]["loss"] - math.log(257)) < 0.1, ("first loss should be about ln(257)", one[0]["loss"])
for m in one:
    assert m["tokens_per_second"] > 0 and "train_accuracy" not in m, m
def worst(a, b):
    return max(abs(x["loss"] - y["loss"]) / x["loss"] for x, y in zip(a, b))
for name in ("w2", "w3", "w3-mpi", "w2-accum"):
    other = curve(name)
    assert len(other) == 40, (name, len(other))
    d = worst(one, other)
    print(f"w1 vs {name}: largest relative loss difference {d:.2e}")
    assert d < 2e-3, f"w1 vs {name}: loss curves differ by {d:.2e}"
    assert [x["batch_digest"] for x in one] == [x["batch_digest"] for x in other], f"{name}: other batches"
a, b = summary("w3")["weights_digest"], summary("w3-again")["weights_digest"]
assert a == b, f"two 3-worker runs ended with different weights: {a} vs {b}"
a, b = summary("w2")["weights_digest"], summary("w2-recompute")["weights_digest"]
assert a == b, f"train.recompute 2 ended with other weights than 0: {b} vs {a}"
kept, recomputing = summary("w2")["memory_bytes_per_worker"], summary("w2-recompute")["memory_bytes_per_worker"]
print(f"memory per worker: {kept} bytes kept, {recomputing} under train.recompute 2")
assert 0 < recomputing < kept, ("train.recompute 2 should take less memory, measured", recomputing, kept)
s = summary("w2")
assert s["model"] == "gpt" and s["val_loss"] is not None and s["tokens_per_second"] > 0, s
assert s["val_loss"] < math.log(257), s
assert s["attention"].startswith("cpu"), ("summary.json names the attention path the workers ran", s.get("attention"))
ev = [json.loads(line) for line in open(f"{work}/w2/eval.jsonl")]
assert ev and abs(ev[-1]["val_loss"] - s["val_loss"]) < 1e-6 and ev[-1]["tokens"] == 4096, (ev, s["val_loss"])
assert abs(ev[-1]["bits_per_byte"] - ev[-1]["val_loss"] / math.log(2)) < 1e-6, ev
PY
echo "gpt workers: ok"
