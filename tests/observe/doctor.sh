# ringmaster doctor on the default job (configs/fashion_mnist.yaml, 2
# workers): it runs on the job's ranks, prints the table, writes
# RUN_DIR/doctor.json with the sgemm shapes of the model, busbw = algbw *
# 2(n-1)/n, a prediction, and names compute as the bottleneck. With the
# loader throttled it names storage. A run into the same directory puts
# predicted next to measured samples/s in summary.json.
CONFIG=$(cd "$(dirname "$0")/../.." && pwd)/configs/fashion_mnist.yaml
source "$(dirname "$0")/lib.sh"
"$RINGMASTER" doctor "$CONFIG" --set data.dir="$DATA" --run-dir "$WORK/run" >doctor.txt 2>&1 ||
  { cat doctor.txt; fail "doctor failed"; }
cat doctor.txt
expect_in doctor.txt "ringmaster doctor: 2 workers, backend cpu, model mlp, 535818 parameters (784-512-256-10)"
for row in "storage read, cold cache" "storage read, warm cache" "memory bandwidth (triad)" "host-to-device" \
  "sgemm layers.0.weight forward 64x512x784" "all-reduce busbw (x 2(n-1)/n)" "predicted throughput:" "bottleneck: compute"; do
  expect_in doctor.txt "$row"
done
grep -q -- "-np 3 .*ringmaster-doctor" doctor.txt || fail "doctor did not run on the job's ranks (2 workers + coordinator)"

"$RINGMASTER" doctor "$CONFIG" --set data.dir="$DATA" --set debug.loader_throttle_mb_s=1 --out "$WORK/slow.json" \
  >slow.txt 2>&1 || { cat slow.txt; fail "throttled doctor failed"; }
expect_in slow.txt "bottleneck: storage"

if "$RINGMASTER" doctor "$CONFIG" --set data.dir="$WORK/nowhere" >bad.txt 2>&1; then fail "a missing dataset was accepted"; fi
expect_in bad.txt "$WORK/nowhere"

"$RINGMASTER" run "$CONFIG" --set data.dir="$DATA" --run-dir "$WORK/run" --set train.steps=800 \
  --set train.warmup_steps=50 >run.txt 2>&1 || { cat run.txt; fail "run failed"; }

"$PYTHON" - "$WORK/run" "$WORK/slow.json" <<'PY'
import json, sys
run, slow = sys.argv[1:]
d = json.load(open(f"{run}/doctor.json"))
assert d["workers"] == 2 and d["parameters"] == 535818 and d["gradient_bytes"] == 535818 * 4, d
assert d["bottleneck"] == "compute", d["bottleneck"]
assert d["predicted_samples_per_second"] > 0 and abs(d["predicted_step_s"] * d["predicted_samples_per_second"] - 128) < 1e-6 * 128
m = d["step_model"]
assert abs(max(m["loader_s"], m["compute_s"] + m["allreduce_s"] + m["optimizer_s"]) - d["predicted_step_s"]) < 1e-6 * d["predicted_step_s"], d
assert d["host_to_device_gb_s"] is None
assert len(d["ranks"]) == 2
for r in d["ranks"]:
    assert r["storage_cold_mb_s"] > 0 and r["storage_warm_mb_s"] > 0 and r["memory_gb_s"] > 0, r
    assert abs(r["allreduce_busbw_gb_s"] - r["allreduce_algbw_gb_s"] * 2 * (2 - 1) / 2) < 1e-9, r
    assert abs(r["allreduce_algbw_gb_s"] - 535818 * 4 / r["allreduce_s"] / 1e9) < 1e-6 * r["allreduce_algbw_gb_s"], r
    shapes = [(g["what"], g["m"], g["n"], g["k"]) for g in r["gemms"]]
    assert shapes == [("layers.0.weight forward", 64, 512, 784), ("layers.0.weight weight grad", 512, 784, 64),
                      ("layers.1.weight forward", 64, 256, 512), ("layers.1.weight weight grad", 256, 512, 64),
                      ("layers.1.weight input grad", 64, 512, 256), ("layers.2.weight forward", 64, 10, 256),
                      ("layers.2.weight weight grad", 10, 256, 64), ("layers.2.weight input grad", 64, 256, 10)], shapes
    assert all(g["gflops"] > 0 for g in r["gemms"])
s = json.load(open(slow))
assert s["bottleneck"] == "storage", s["bottleneck"]
assert s["step_model"]["loader_s"] > s["step_model"]["compute_s"], s["step_model"]
summary = json.load(open(f"{run}/summary.json"))
p = summary["prediction"]
assert p and p["source"] == "doctor.json" and p["bottleneck"] == "compute", p
assert p["predicted_samples_per_second"] == d["predicted_samples_per_second"], p
assert p["measured_samples_per_second"] == summary["samples_per_second"], p
# a shared CI machine is noisy: only a gross mismatch fails here (the
# figures on a quiet machine are in docs/doctor.md)
ratio = p["measured_over_predicted"]
assert 0.4 < ratio < 2.5, p
print(f"predicted {p['predicted_samples_per_second']:.0f} samples/s, measured {p['measured_samples_per_second']:.0f} "
      f"({ratio:.2f}x)")
PY
echo "doctor: ok"
