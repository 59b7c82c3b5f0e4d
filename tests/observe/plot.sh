# ringmaster plot RUN_DIR: four PNG charts (loss, test accuracy, samples/s,
# phases) of the size the script asks for, the gnuplot script and data
# next to them; a missing run directory or a damaged metrics line is named.
source "$(dirname "$0")/lib.sh"
command -v gnuplot >/dev/null || fail "gnuplot is not installed (scripts/install-deps.sh)"
write_job job.yaml
"$RINGMASTER" run job.yaml --run-dir "$WORK/run" --set train.steps=300 --set train.eval_every=100 >run.txt 2>&1 ||
  { cat run.txt; fail "run failed"; }
"$RINGMASTER" plot "$WORK/run" >plot.txt 2>&1 || { cat plot.txt; fail "plot failed"; }
for chart in loss test_accuracy samples_per_second phases; do
  expect_in plot.txt "$WORK/run/plots/$chart.png"
done
"$PYTHON" - "$WORK/run/plots" <<'PY'
import struct, sys
d = sys.argv[1]
for chart in ("loss", "test_accuracy", "samples_per_second", "phases"):
    data = open(f"{d}/{chart}.png", "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{chart}.png is not a PNG"
    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (1100, 650), (chart, w, h)
    assert len(data) > 8000, f"{chart}.png is nearly empty ({len(data)} bytes)"
steps = [l.split() for l in open(f"{d}/steps.dat") if not l.startswith("#")]
assert len(steps) == 300 and float(steps[-1][0]) == 300, len(steps)
evals = [l.split() for l in open(f"{d}/eval.dat")]
assert [int(e[0]) for e in evals] == [100, 200, 300], evals
gp = open(f"{d}/plot.gp").read()
for label in ("set xlabel 'training step'", "cross-entropy loss", "test accuracy (%)", "samples per second",
              "time per step (ms), stacked"):
    assert label in gp, label
PY
if "$RINGMASTER" plot "$WORK/nope" >missing.txt 2>&1; then fail "a missing run directory was accepted"; fi
expect_in missing.txt "$WORK/nope: no such run directory"
mkdir -p "$WORK/broken" && head -3 "$WORK/run/metrics.jsonl" >"$WORK/broken/metrics.jsonl"
echo '{"step": 4, "garbage": true}' >>"$WORK/broken/metrics.jsonl"
if "$RINGMASTER" plot "$WORK/broken" >broken.txt 2>&1; then fail "a damaged metrics line was accepted"; fi
expect_in broken.txt "$WORK/broken/metrics.jsonl:4: not a metrics line"
echo "plot: ok"
