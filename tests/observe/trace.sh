# Timeline: observe.trace_steps [18, 22] gives one Chrome-trace file per
# worker and a merged RUN_DIR/trace.json that Perfetto opens: valid
# trace-event JSON, complete events ("X") with ts/dur in microseconds, one
# pid per rank with its name, the step phases, every gradient bucket's
# all-reduce of each traced step, and the checkpoint written at step 20.
source "$(dirname "$0")/lib.sh"
write_job job.yaml
# Buckets are the MPI reduction's (launch.cpu_reduce=mpi); summed through
# shared memory, each worker's one "bucket" is its slice (checked below).
"$RINGMASTER" run job.yaml --run-dir "$WORK/run" --set train.steps=40 --set observe.trace_steps=[18,22] \
  --set train.bucket_mb=0.1 --set checkpoint.every_steps=20 --set launch.cpu_reduce=mpi >out.txt 2>&1 ||
  { cat out.txt; fail "run failed"; }
expect_in out.txt "timeline of steps 18-22 from 2 workers"
"$PYTHON" - "$WORK/run" <<'PY'
import json, sys
run = sys.argv[1]
merged = json.load(open(f"{run}/trace.json"))
events = merged["traceEvents"]
x = [e for e in events if e["ph"] == "X"]
meta = [e for e in events if e["ph"] == "M"]
assert x and meta
for e in x:
    for k in ("name", "cat", "ph", "ts", "dur", "pid", "tid", "args"):
        assert k in e, (k, e)
    assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float)) and e["dur"] >= 0, e
    assert e["pid"] in (1, 2), e
    assert 18 <= e["args"]["step"] <= 22, e
names = {e["args"]["name"] for e in meta if e["name"] == "process_name"}
assert any(n.startswith("worker 0 (rank 1") for n in names) and any(n.startswith("worker 1 (rank 2") for n in names), names
# 101770 parameters = 407080 bytes in 0.1 MiB buckets: 4 buckets
n_buckets = -(-407080 // int(0.1 * 1024 * 1024))
for pid in (1, 2):
    mine = [e for e in x if e["pid"] == pid]
    for step in range(18, 23):
        s = [e for e in mine if e["args"]["step"] == step]
        phases = {e["name"] for e in s if e["tid"] == 0}
        assert {"step", "forward + backward", "gradient reduction wait", "optimizer"} <= phases, (pid, step, phases)
        buckets = [e for e in s if e["cat"] == "allreduce"]
        assert sorted(e["args"]["bucket"] for e in buckets) == list(range(n_buckets)), (pid, step, buckets)
        assert sum(e["args"]["bytes"] for e in buckets) == 407080, buckets
        step_ev = [e for e in s if e["name"] == "step"][0]
        fb = [e for e in s if e["name"] == "forward + backward"][0]
        # buckets start inside the step, after its forward pass began
        for b in buckets:
            assert fb["ts"] - 1 <= b["ts"] <= step_ev["ts"] + step_ev["dur"] + 1, (b, fb, step_ev)
        assert abs(step_ev["ts"] - fb["ts"]) < step_ev["dur"], (step_ev, fb)
    ck = [e for e in mine if e["name"] == "checkpoint write"]
    assert len(ck) == 1 and ck[0]["args"]["step"] == 20 and ck[0]["tid"] == 2 and ck[0]["args"]["bytes"] > 0, ck
    own = json.load(open(f"{run}/trace/worker-{pid - 1}.json"))
    assert {e["pid"] for e in own["traceEvents"]} == {pid}, f"worker-{pid - 1}.json holds other ranks"
    assert len([e for e in own["traceEvents"] if e["ph"] == "X"]) == len(mine)
# the steps follow each other in time on each rank
for pid in (1, 2):
    starts = sorted((e["args"]["step"], e["ts"]) for e in x if e["pid"] == pid and e["name"] == "step")
    assert [s for s, _ in starts] == list(range(18, 23)) and all(a[1] < b[1] for a, b in zip(starts, starts[1:])), starts
print(f"{len(x)} events from 2 ranks")
PY
# shared-memory reduction: one event per worker and step, the worker's
# half of the gradient
"$RINGMASTER" run job.yaml --run-dir "$WORK/shm" --set train.steps=30 --set observe.trace_steps=[10,12] \
  --set launch.cpu_reduce=shm >shm.txt 2>&1 || { cat shm.txt; fail "shm run failed"; }
"$PYTHON" - "$WORK/shm" <<'PY'
import json, sys
x = [e for e in json.load(open(f"{sys.argv[1]}/trace.json"))["traceEvents"] if e["ph"] == "X"]
for pid in (1, 2):
    for step in (10, 11, 12):
        b = [e for e in x if e["pid"] == pid and e["args"]["step"] == step and e["cat"] == "allreduce"]
        assert len(b) == 1 and b[0]["args"]["bytes"] == 203540, (pid, step, b)
print("shm trace: one slice event per worker and step")
PY
# no trace asked: no trace files
"$RINGMASTER" run job.yaml --run-dir "$WORK/plain" --set train.steps=30 >plain.txt 2>&1 || { cat plain.txt; fail "run failed"; }
[ ! -e "$WORK/plain/trace.json" ] && [ ! -e "$WORK/plain/trace" ] || fail "a trace was written without observe.trace_steps"
if "$RINGMASTER" validate job.yaml --set observe.trace_steps=[30,20] >bad.txt 2>&1; then fail "[30,20] accepted"; fi
expect_in bad.txt "observe.trace_steps is [30, 20]: the last step comes before the first"
echo "trace: ok"
