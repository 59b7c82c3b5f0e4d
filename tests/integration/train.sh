# Trains the small job on 2 workers for 400 steps and checks what a user
# reads afterwards: the loss falls, the test accuracy is what this model
# reaches (>= 0.80), and summary.json / metrics.jsonl / eval.jsonl /
# events.jsonl hold the documented fields, one metrics line per step.
source "$(dirname "$0")/lib.sh"
write_job job.yaml
"$RINGMASTER" run job.yaml --run-dir "$WORK/run" --set train.steps=400 >out.txt 2>&1 ||
  { cat out.txt; fail "ringmaster run exited with status $?"; }
expect_in out.txt "done: 400 steps on 2 workers"
for f in config.yaml command.txt metrics.jsonl eval.jsonl events.jsonl summary.json; do
  [ -s "run/$f" ] || fail "run/$f is missing or empty"
done

"$PYTHON" - "$WORK/run" <<'PY'
import json, math, sys
run = sys.argv[1]
summary = json.load(open(f"{run}/summary.json"))
for key in ("test_accuracy", "samples_per_second", "steps", "wall_seconds", "workers", "weights_digest"):
    assert key in summary, f"summary.json has no {key}: {summary}"
assert summary["status"] == "completed", summary
assert summary["steps"] == 400, summary
assert summary["workers"] == 2, summary
assert summary["global_batch"] == 128, summary
assert summary["samples"] == 400 * 128, summary
assert summary["samples_per_second"] > 0 and summary["wall_seconds"] > 0, summary
assert summary["train_seconds"] <= summary["wall_seconds"], summary
digest = summary["weights_digest"]
assert len(digest) == 16 and all(c in "0123456789abcdef" for c in digest), digest
assert summary["test_accuracy"] >= 0.80, f"test accuracy {summary['test_accuracy']} < 0.80"

lines = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
assert len(lines) == 400, f"{len(lines)} metrics lines for 400 steps"
phases = ("step_s", "data_wait_s", "compute_s", "allreduce_wait_s", "optimizer_s")
for i, m in enumerate(lines):
    assert m["step"] == i + 1, f"line {i + 1} is step {m['step']}"
    for key in ("epoch", "loss", "lr", "samples_per_second", "train_accuracy") + phases:
        assert key in m, f"step {m['step']} has no {key}"
    for p in phases:
        assert m[p] >= 0 and m[p + "_max"] >= m[p] - 1e-12, (p, m)
    assert math.isfinite(m["loss"]) and m["loss"] > 0, m
    assert abs(m["epoch"] - (i + 1) * 128 / 60000) < 1e-6, m
    assert 0 <= m["train_accuracy"] <= 1, m
# the schedule: linear warmup over 20 steps to 0.002, then cosine to 0
assert abs(lines[0]["lr"] - 0.002 / 20) < 1e-12, lines[0]
assert abs(lines[19]["lr"] - 0.002) < 1e-12, lines[19]
assert lines[-1]["lr"] < 1e-9, lines[-1]
first = sum(m["loss"] for m in lines[:20]) / 20
last = sum(m["loss"] for m in lines[-20:]) / 20
assert last < 0.6 * first, f"loss did not fall enough: first 20 steps {first:.4f}, last 20 {last:.4f}"

evals = [json.loads(line) for line in open(f"{run}/eval.jsonl")]
assert len(evals) == 1 and evals[0]["step"] == 400, evals
assert evals[0]["samples"] == 10000, evals
assert evals[0]["test_accuracy"] == summary["test_accuracy"], (evals, summary)

events = [json.loads(line)["event"] for line in open(f"{run}/events.jsonl")]
assert "start" in events and events[-1] == "end", events
print(f"loss {first:.3f} -> {last:.3f}, test accuracy {summary['test_accuracy']:.4f}, "
      f"{summary['samples_per_second']:.0f} samples/s")
PY
