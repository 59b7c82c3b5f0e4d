# launch.backend and train.precision on a machine without a usable GPU (CI):
#   - gpu: the job stops before training, naming the worker and the reason
#     (no device, or a build without the GPU backend); never a CPU run;
#   - auto: every worker runs the CPU backend, with one line saying why, and
#     the weights are bit-identical to backend cpu;
#   - train.precision bf16 with backend cpu: refused at validation, naming
#     the config line.
# Skipped where a GPU is usable: there gpu and auto run on it
# (scripts/gpu-check.sh checks that).
source "$(dirname "$0")/lib.sh"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIP: a GPU is visible here; this test is about machines without one"
  exit 77
fi
write_job job.yaml

status=0
"$RINGMASTER" run job.yaml --run-dir "$WORK/gpu" --set train.steps=30 --set launch.backend=gpu \
  --set fault.max_restarts=2 >gpu.txt 2>&1 || status=$?
[ "$status" -ne 0 ] || { cat gpu.txt; fail "backend gpu without a GPU succeeded"; }
expect_in gpu.txt "launch.backend is gpu but"
grep -qE "worker [01] on [^:]+: launch.backend is gpu but (no usable CUDA device|no CUDA device|this build of ringmaster has no GPU backend)" gpu.txt ||
  { cat gpu.txt; fail "the gpu refusal does not name the worker and the reason"; }
! grep -q "^done:" gpu.txt || fail "backend gpu without a GPU trained anyway"
# a missing device is not worth a restart, even with restarts allowed
expect_in gpu.txt "not restarting: a restart cannot fix this"
! grep -q "restart 1 of" gpu.txt || fail "a missing GPU was retried as if a restart could fix it"
echo "gpu: $(grep -m1 -o 'worker [01] on [^:]*: launch.backend is gpu but.*' gpu.txt | cut -c1-160)"

"$RINGMASTER" run job.yaml --run-dir "$WORK/auto" --set train.steps=30 --set launch.backend=auto >auto.txt 2>&1 ||
  { cat auto.txt; fail "backend auto without a GPU failed"; }
expect_in auto.txt "launch.backend auto: worker 0 has no usable GPU"
expect_in auto.txt "every worker uses the CPU backend"
[ "$(grep -c "launch.backend auto:" auto.txt)" = 1 ] || { cat auto.txt; fail "the auto notice is not one line"; }
"$RINGMASTER" run job.yaml --run-dir "$WORK/cpu" --set train.steps=30 --set launch.backend=cpu >cpu.txt 2>&1 ||
  { cat cpu.txt; fail "backend cpu failed"; }
"$PYTHON" - "$WORK/auto/summary.json" "$WORK/cpu/summary.json" <<'PY'
import json, sys
auto, cpu = (json.load(open(p)) for p in sys.argv[1:])
assert auto["backend"] == "cpu", f"auto fell back but summary.json says {auto['backend']}"
assert auto["weights_digest"] == cpu["weights_digest"], (auto["weights_digest"], cpu["weights_digest"])
print("auto == cpu:", auto["weights_digest"])
PY

status=0
"$RINGMASTER" validate job.yaml --set train.precision=bf16 >bf16.txt 2>&1 || status=$?
[ "$status" -ne 0 ] || { cat bf16.txt; fail "precision bf16 with backend cpu was accepted"; }
expect_in bf16.txt "train.precision bf16 needs launch.backend gpu or auto"
echo "bf16 on cpu: $(cat bf16.txt)"
