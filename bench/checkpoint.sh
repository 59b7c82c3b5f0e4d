#!/usr/bin/env bash
# Checkpoint and recovery figures on this machine, one command:
#
#   bench/checkpoint.sh
#
#   1. training stall per checkpoint for the default model
#      (configs/fashion_mnist.yaml, checkpoint every 100 steps). The stall
#      of a checkpoint at step s is how much longer step s took than the
#      steps around it: step_s_max[s] - median(step_s_max of the K steps
#      before and the K after), K = 5, from metrics.jsonl (the checkpoint
#      steps are those of the checkpoint events in events.jsonl). Target:
#      median under 5% of the median step. Also printed: the same for the
#      step after and for both steps together (so that a cost moved from
#      the checkpoint's step into the next one shows); the excess of the
#      checkpoint step and the K steps after it over the median before
#      (what the background write costs the steps it overlaps, where the
#      workers fill the cores); the workers' own count (ckpt_stall_s_max of
#      both steps); and, per phase, how much the slowest worker's time in
#      it grew in the checkpoint's step (which phase the stall is in:
#      grad_reduce growing means the other worker was late), beside the
#      growth of run_delay_s_max (time a worker waited for a core: other
#      work on the machine);
#   2. checkpoint write rate (bytes of one checkpoint / the slowest worker's
#      write time: create, every byte, fsync) for a larger MLP (AdamW:
#      params + 2 moments), plain and sealed (security.key_file), beside
#      `dd bs=8M conv=fsync` of the same number of bytes into the same
#      directory (target: plain >= 80% of dd);
#   3. the same for a GPT (8 layers, dim 768, context 128, AdamW: ~340 MB
#      per worker) on a byte-level dataset made from this repository's docs;
#   4. time from a SIGKILLed worker to training resumed (the first step
#      after the restart is logged), target under 10 s.
# Environment: BUILD_DIR (default build; relative to the repository or
# absolute), DD_RUNS (dd repetitions per figure, default 3), ONLY (the
# parts to run, e.g. ONLY="1 2"; default all).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
[ -x "$build/bin/ringmaster" ] || BUILD_DIR=$build scripts/build.sh >/dev/null
case $build in /*) ;; *) build=$root/$build ;; esac
RM=$build/bin/ringmaster
[ -f data/fashion-mnist/train/index.rmi ] || RINGMASTER=$RM scripts/prepare-fashion-mnist.sh data/fashion-mnist >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-ckbench.XXXXXX")
q=(--set observe.verbosity=quiet --set data.eval_split='""')
dd_runs=${DD_RUNS:-3}
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

# rate RUN_DIR LABEL: each committed checkpoint's write rate, then dd's for
# the same bytes into the same directory, and the ratio.
rate() {
  python3 - "$1" "$2" "$dd_runs" <<'PY'
import json, os, re, statistics, subprocess, sys
run, label, dd_runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
events = [json.loads(l) for l in open(os.path.join(run, "events.jsonl")) if '"checkpoint"' in l]
ck = os.path.join(run, "checkpoints")
rates, size = [], 0
for e in events:
    d = os.path.join(ck, e["dir"])
    if not os.path.isdir(d):
        continue
    m = json.load(open(os.path.join(d, "manifest.json")))
    size = sum(f["bytes"] for f in m["files"])
    rates.append(size / e["write_s"] / 1e6)
    print(f"  {e['dir']}: {size/1e6:.1f} MB ({len(m['files'])} writers in parallel) in {e['write_s']*1e3:.1f} ms"
          f" = {rates[-1]:.0f} MB/s; commit {e['commit_s']*1e3:.1f} ms")
if not rates:
    sys.exit(f"{run}: no committed checkpoint")
count = (size + (8 << 20) - 1) // (8 << 20)
dd = []
for i in range(dd_runs):
    subprocess.run(["sync"])
    out = subprocess.run(["dd", "if=/dev/zero", f"of={ck}/dd.bin", "bs=8M", f"count={count}", "conv=fsync"],
                         capture_output=True, text=True).stderr
    os.unlink(f"{ck}/dd.bin")
    b, s = re.search(r"^(\d+) bytes.*copied, ([\d.]+) s", out, re.M).groups()
    dd.append(int(b) / float(s) / 1e6)
best, med = max(rates), statistics.median(rates)
print(f"{label}: best {best:.0f} MB/s, median {med:.0f} MB/s over {len(rates)} checkpoints")
print(f"  dd if=/dev/zero bs=8M count={count} conv=fsync into {ck}, {dd_runs} runs: best {max(dd):.0f} MB/s,"
      f" median {statistics.median(dd):.0f} MB/s")
print(f"  -> best {100*best/max(dd):.0f}% of dd's best, median {100*med/statistics.median(dd):.0f}% of dd's median")
PY
}

if want 1; then
echo "== 1. stall per checkpoint (default model, checkpoint every 100 steps)"
"$RM" run configs/fashion_mnist.yaml --run-dir "$work/stall" --set train.steps=2000 --set checkpoint.every_steps=100 \
  --set checkpoint.keep=2 "${q[@]}" >"$work/stall.log" 2>&1
python3 - "$work/stall" <<'PY'
import json, os, statistics, sys
K = 5
rows = [json.loads(l) for l in open(os.path.join(sys.argv[1], "metrics.jsonl"))]
events = [json.loads(l) for l in open(os.path.join(sys.argv[1], "events.jsonl")) if '"checkpoint"' in l]
at = {r["step"]: i for i, r in enumerate(rows)}
ck = sorted(at[e["step"]] for e in events if e.get("event") == "checkpoint" and e["step"] in at)
step = [r["step_s_max"] for r in rows]
near = set(j for i in ck for j in (i, i + 1))
med_step = statistics.median(s for i, s in enumerate(step) if i not in near)
stall, next_stall, both, after, own = [], [], [], [], []
phases = ["data_wait_s", "compute_s", "allreduce_wait_s", "ckpt_stall_s", "optimizer_s", "param_gather_s",
          "run_delay_s"]
grew = {p: [] for p in phases}
for i in ck:
    if i < K or i + 1 + K >= len(rows):
        continue  # the run's first and last steps lack neighbours on one side
    stall.append(step[i] - statistics.median(step[i - K:i] + step[i + 1:i + 1 + K]))
    around = statistics.median(step[i - K:i] + step[i + 2:i + 2 + K])  # of the pair i, i + 1
    next_stall.append(step[i + 1] - around)
    both.append(step[i] + step[i + 1] - 2 * around)
    before = statistics.median(step[i - K:i])
    after.append(sum(step[j] - before for j in range(i, i + K + 1)))
    own.append(rows[i]["ckpt_stall_s_max"] + rows[i + 1]["ckpt_stall_s_max"])
    for p in phases:
        v = [r.get(p + "_max", 0) for r in rows]
        grew[p].append(v[i] - statistics.median(v[i - K:i] + v[i + 1:i + 1 + K]))
if not stall:
    sys.exit("no checkpoint step with neighbours")
pct = lambda x: 100 * x / med_step
med = lambda xs: f"{statistics.median(xs)*1e3:.3f} ms = {pct(statistics.median(xs)):.1f}% of a step"
print(f"checkpoints: {len(stall)}; median step {med_step*1e3:.3f} ms")
print(f"stall = checkpoint step - median of the {K} steps before and the {K} after: median {med(stall)}"
      f" (target < 5%); mean {statistics.mean(stall)*1e3:.3f} ms, max {max(stall)*1e3:.3f} ms")
print(f"the step after, the same way: median {med(next_stall)}")
print(f"both steps together over the median of the {K} before and the {K} after them: median {med(both)}")
print(f"excess of the checkpoint step and the {K} after it over the median of the {K} before: median {med(after)}")
print(f"workers' own count (ckpt_stall_s_max of both steps: waiting for the writer + the snapshot copy):"
      f" median {med(own)}")
print("growth in the checkpoint's step over the same neighbours, slowest worker per phase (median): "
      + ", ".join(f"{p[:-2]} {statistics.median(grew[p])*1e3:+.3f} ms" for p in phases))
PY
fi

if want 2; then
echo "== 2. checkpoint write rate vs dd (MLP 784-2048-2048-10, AdamW: params + 2 moments)"
mlp=(--set train.steps=100 --set checkpoint.every_steps=20 --set model.hidden=[2048,2048] --set train.warmup_steps=5
  --set checkpoint.keep=5)
"$RM" run configs/fashion_mnist.yaml --run-dir "$work/rate" "${mlp[@]}" "${q[@]}" >"$work/rate.log" 2>&1
rate "$work/rate" "ringmaster checkpoint write, plain (target >= 80% of dd)"
"$RM" keygen "$work/ckpt.key" >/dev/null
"$RM" run configs/fashion_mnist.yaml --run-dir "$work/rate-sealed" "${mlp[@]}" --set security.key_file="$work/ckpt.key" \
  "${q[@]}" >"$work/rate-sealed.log" 2>&1
rate "$work/rate-sealed" "ringmaster checkpoint write, sealed with security.key_file (no target)"
fi

if want 3; then
echo "== 3. checkpoint write rate vs dd (GPT: 8 layers, dim 768, 12 heads, context 128, AdamW)"
"$RM" data import-text docs/*.md README.md --out "$work/text" --tokenizer bytes --val-fraction 0.1 >/dev/null
"$RM" run bench/gpt-cpu.yaml --run-dir "$work/gpt" --set data.dir="$work/text" --set model.layers=8 --set model.dim=768 \
  --set model.heads=12 --set model.context=128 --set train.global_batch=2 --set train.steps=6 \
  --set train.warmup_steps=1 --set checkpoint.every_steps=2 --set checkpoint.keep=3 "${q[@]}" >"$work/gpt.log" 2>&1
rate "$work/gpt" "ringmaster checkpoint write, GPT"
fi

if want 4; then
echo "== 4. time from a killed worker to training resumed"
dir=$work/kill
"$RM" run configs/fashion_mnist.yaml --run-dir "$dir" --set train.steps=3000 --set checkpoint.every_steps=100 \
  --set fault.restart_backoff_s=0.5 "${q[@]}" >"$work/kill.log" 2>&1 &
job=$!
until [ -f "$dir/checkpoints/step-00000200/manifest.json" ]; do sleep 0.05; done
victim=$(awk '$2 == "1" {print $4}' "$dir/ranks.txt")
t0=$(date +%s.%N)
kill -9 "$victim"
until grep -q '"event":"resume"' "$dir/events.jsonl" 2>/dev/null; do sleep 0.01; done
from=$(grep '"event":"resume"' "$dir/events.jsonl" | tail -1 | sed 's/.*"step":\([0-9]*\).*/\1/')
until grep -q "\"step\":$((from + 1))," "$dir/metrics.jsonl" 2>/dev/null; do sleep 0.01; done
t1=$(date +%s.%N)
wait "$job" || true
echo "killed worker 1 at step >= 200; resumed from step $from; first step after the restart logged $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s after the kill (restart backoff 0.5 s included; target < 10 s)"
fi
echo "details: $work"
