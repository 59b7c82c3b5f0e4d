#!/usr/bin/env bash
# Checkpoint and recovery figures on this machine, one command:
#
#   bench/checkpoint.sh
#
#   1. training stall per checkpoint for the default model
#      (configs/fashion_mnist.yaml, checkpoint every 100 steps), against the
#      mean step time (target: under 5% of a step);
#   2. checkpoint write rate (bytes of one checkpoint / the slowest worker's
#      write time, fsync included) for a larger model, against `dd ...
#      conv=fsync` to the same directory;
#   3. time from a SIGKILLed worker to training resumed (the first step
#      after the restart is logged), target under 10 s.
# Environment: BUILD_DIR (default build).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
[ -x "$build/bin/ringmaster" ] || BUILD_DIR=$build scripts/build.sh >/dev/null
RM=$root/$build/bin/ringmaster
[ -f data/fashion-mnist/train/index.rmi ] || RINGMASTER=$RM scripts/prepare-fashion-mnist.sh data/fashion-mnist >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-ckbench.XXXXXX")
q=(--set observe.verbosity=quiet)

field() { sed -n "s/.*\"$2\": *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$1" | head -1; }

echo "== 1. stall per checkpoint (default model, checkpoint every 100 steps)"
"$RM" run configs/fashion_mnist.yaml --run-dir "$work/stall" --set train.steps=2000 --set checkpoint.every_steps=100 \
  --set checkpoint.keep=2 --set data.eval_split='""' "${q[@]}" >"$work/stall.log" 2>&1
s=$work/stall/summary.json
python3 - "$work/stall/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
stall = [r["ckpt_stall_s_max"] for r in rows if r["ckpt_stall_s_max"] > 0]
steps = [r["step_s_max"] for r in rows if r["ckpt_stall_s_max"] == 0]
med_step = statistics.median(steps)
print(f"checkpoints: {len(stall)}; stall median {statistics.median(stall)*1e3:.3f} ms, mean {statistics.mean(stall)*1e3:.3f} ms, max {max(stall)*1e3:.3f} ms")
print(f"step time median {med_step*1e3:.3f} ms -> median stall = {100*statistics.median(stall)/med_step:.1f}% of a step (target < 5%)")
PY

echo "== 2. checkpoint write rate vs dd (MLP 784-2048-2048-10, AdamW: params + 2 moments)"
"$RM" run configs/fashion_mnist.yaml --run-dir "$work/rate" --set train.steps=60 --set checkpoint.every_steps=20 \
  --set model.hidden=[2048,2048] --set train.warmup_steps=5 --set checkpoint.keep=3 --set data.eval_split='""' "${q[@]}" >"$work/rate.log" 2>&1
python3 - "$work/rate" <<'PY'
import json, os, sys
run = sys.argv[1]
events = [json.loads(l) for l in open(os.path.join(run, "events.jsonl")) if '"checkpoint"' in l]
ck = os.path.join(run, "checkpoints")
rates = []
for e in events:
    d = os.path.join(ck, e["dir"])
    if not os.path.isdir(d):
        continue
    m = json.load(open(os.path.join(d, "manifest.json")))
    size = sum(f["bytes"] for f in m["files"])
    rates.append(size / e["write_s"] / 1e6)
    print(f"{e['dir']}: {size/1e6:.1f} MB in {e['write_s']*1e3:.1f} ms (2 writers in parallel) = {rates[-1]:.0f} MB/s; commit {e['commit_s']*1e3:.1f} ms")
print(f"ringmaster checkpoint write: best {max(rates):.0f} MB/s")
PY
sync
dd if=/dev/zero of="$work/rate/dd.bin" bs=1M count=256 conv=fsync 2>&1 | tail -1 | sed 's/^/dd (256 MiB, conv=fsync) to the same disk: /'
rm -f "$work/rate/dd.bin"

echo "== 3. time from a killed worker to training resumed"
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
echo "details: $work"
