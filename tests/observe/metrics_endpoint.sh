# /metrics on loopback while a job runs: Prometheus text with the step,
# loss, samples/s and every worker's phase times; the figures move while
# the job runs; unknown paths are 404; the endpoint is gone after the job.
# metrics.jsonl carries every worker's phase times, and the plain progress
# lines come every observe.progress_every_steps steps with a timestamp.
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || fail "curl is not installed (scripts/install-deps.sh --tests)"
write_job job.yaml
# The loader throttle makes the run last a few seconds whatever the CPU.
"$RINGMASTER" run job.yaml --run-dir "$WORK/run" --set train.steps=400 --set observe.metrics_port=0 \
  --set observe.progress_every_steps=50 --set debug.loader_throttle_mb_s=4 >out.txt 2>&1 &
job=$!
wait_file "$WORK/run/metrics-url.txt"
url=$(cat "$WORK/run/metrics-url.txt")
case $url in http://127.0.0.1:*/metrics) ;; *) fail "metrics URL $url is not on 127.0.0.1" ;; esac
# first scrape once some steps are done, a second one later
for i in $(seq 1 200); do
  curl -sf --max-time 5 "$url" >scrape1.txt 2>/dev/null && grep -q '^ringmaster_step [1-9]' scrape1.txt && break
  sleep 0.05
done
grep -q '^ringmaster_step [1-9]' scrape1.txt || { cat scrape1.txt; fail "no step figure in /metrics"; }
sleep 1
curl -sf --max-time 5 "$url" >scrape2.txt || fail "second scrape failed"
[ "$(http_status "${url%/metrics}/nope")" = 404 ] || fail "an unknown path is not 404"
wait "$job" || { cat out.txt; fail "the job failed"; }
[ "$(http_status "$url")" = 000 ] || fail "/metrics still answers after the job ended"

"$PYTHON" - scrape1.txt scrape2.txt "$WORK/run" <<'PY'
import json, re, sys
def parse(path):
    vals, types = {}, {}
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-z_]+)(\{[^}]*\})? (\S+)', line)
        assert m, f"not Prometheus text: {line!r}"
        vals[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return vals, types
a, types = parse(sys.argv[1])
b, _ = parse(sys.argv[2])
for name in ("ringmaster_step", "ringmaster_loss", "ringmaster_samples_per_second", "ringmaster_epoch",
             "ringmaster_learning_rate", "ringmaster_total_steps", "ringmaster_stragglers_total",
             "ringmaster_slowdowns_total"):
    assert (name, "") in a, f"{name} missing"
    assert name in types, f"{name} has no TYPE line"
assert a[("ringmaster_total_steps", "")] == 400
assert 0 < a[("ringmaster_step", "")] <= 400
assert b[("ringmaster_step", "")] > a[("ringmaster_step", "")], "the step did not move between scrapes"
for w in (0, 1):
    for phase in ("data_wait", "compute", "allreduce_wait", "optimizer", "ckpt_stall", "step"):
        keys = [k for k in a if k[0] == "ringmaster_phase_seconds" and f'worker="{w}"' in k[1] and f'phase="{phase}"' in k[1]]
        assert len(keys) == 1, (w, phase, keys)
        assert a[keys[0]] >= 0
    assert any(k[0] == "ringmaster_straggler" and f'worker="{w}"' in k[1] for k in a)

run = sys.argv[3]
lines = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
assert len(lines) == 400
for m in lines:
    pw = m["per_worker"]
    for p in ("data_wait_s", "compute_s", "allreduce_wait_s", "optimizer_s", "ckpt_stall_s", "step_s"):
        assert len(pw[p]) == 2 and all(v >= 0 for v in pw[p]), (m["step"], p, pw)
        assert abs(max(pw[p]) - m[p + "_max"]) < 1e-9, (m["step"], p)
        assert abs(sum(pw[p]) / 2 - m[p]) < 1e-9, (m["step"], p)
summary = json.load(open(f"{run}/summary.json"))

events = [json.loads(l) for l in open(f"{run}/events.jsonl")]
ep = [e for e in events if e["event"] == "metrics_endpoint"]
assert ep and ep[0]["url"] == open(f"{run}/metrics-url.txt").read().strip(), ep
print(f"scrapes at steps {a[('ringmaster_step', '')]:.0f} and {b[('ringmaster_step', '')]:.0f}")
PY
# plain progress: timestamped, every 50 steps (and the first), ETA and slowest phase
n=$(grep -cE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} step [0-9]+/400 epoch [0-9.]+ loss [0-9.]+ samples/s [0-9]+ eta [0-9hms]+ slowest ' out.txt)
[ "$n" -eq 9 ] || { cat out.txt; fail "expected 9 progress lines (step 1 and every 50), got $n"; }
expect_in out.txt "serving Prometheus metrics at http://127.0.0.1:"
echo "metrics endpoint: ok"
