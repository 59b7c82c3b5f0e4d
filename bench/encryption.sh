#!/usr/bin/env bash
# Cost of encryption at rest on the default job, one command:
#
#   bench/encryption.sh
#
# Runs configs/fashion_mnist.yaml (2 workers, CPU backend) plain, and with
# sealed shards (import-idx --encrypt) and sealed checkpoints
# (security.key_file), alternating ROUNDS times (default 5), each run
# STEPS steps (default 4000, about 8.5 epochs) with a checkpoint every 200
# steps, and prints the median training samples/s of each (summary.json:
# samples over the training loop's time) and the difference (target:
# within 3%), the median of the paired differences (each sealed run against
# the plain run just before it, which cancels a machine whose speed drifts),
# plus wall time, which also counts start-up (opening the sealed split
# authenticates and decrypts it once).
# Environment: BUILD_DIR (default build), ROUNDS, STEPS.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
rounds=${ROUNDS:-5}
steps=${STEPS:-4000}
[ -x "$build/bin/ringmaster" ] || BUILD_DIR=$build scripts/build.sh >/dev/null
RM=$root/$build/bin/ringmaster
[ -f data/fashion-mnist/train/index.rmi ] || RINGMASTER=$RM scripts/prepare-fashion-mnist.sh data/fashion-mnist >/dev/null
idx=${RINGMASTER_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
work=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-encbench.XXXXXX")
"$RM" keygen "$work/key" >/dev/null
for split in train:train t10k:test; do
  "$RM" data import-idx --images "$idx/${split%%:*}-images-idx3-ubyte.gz" --labels "$idx/${split%%:*}-labels-idx1-ubyte.gz" \
    --out "$work/data/${split##*:}" --encrypt --key-file "$work/key" >/dev/null
done
common=(--set train.steps="$steps" --set checkpoint.every_steps=200 --set checkpoint.keep=2
        --set observe.verbosity=quiet)
field() { sed -n "s/.*\"$2\": *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$1" | head -1; }
for ((r = 1; r <= rounds; r++)); do
  for mode in plain encrypted; do
    dir=$work/$mode-$r
    if [ "$mode" = plain ]; then
      "$RM" run configs/fashion_mnist.yaml --run-dir "$dir" "${common[@]}" >"$dir.log" 2>&1
    else
      "$RM" run configs/fashion_mnist.yaml --run-dir "$dir" "${common[@]}" --set data.dir="$work/data" \
        --set security.key_file="$work/key" >"$dir.log" 2>&1
    fi
    printf '%s %s %s %s\n' "$mode" "$(field "$dir/summary.json" samples_per_second)" \
      "$(field "$dir/summary.json" wall_seconds)" "$(field "$dir/summary.json" checkpoints_committed)" >>"$work/results"
    echo "round $r $mode: $(field "$dir/summary.json" samples_per_second) samples/s"
  done
done
python3 - "$work/results" "$steps" "$work" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def col(mode, c):
    return [float(r[c]) for r in rows if r[0] == mode]
plain, sealed = col("plain", 1), col("encrypted", 1)
p, e = statistics.median(plain), statistics.median(sealed)
pw, ew = statistics.median(col("plain", 2)), statistics.median(col("encrypted", 2))
ck = [r[3] for r in rows if r[0] == "encrypted"][0]
print(f"default job, {sys.argv[2]} steps, {ck} checkpoints per run, median of {len(rows)//2} runs each:")
print(f"  plain:     {p:10.0f} samples/s   wall {pw:6.2f} s")
print(f"  encrypted: {e:10.0f} samples/s   wall {ew:6.2f} s   (sealed shards + sealed checkpoints)")
print(f"  difference: {100*(e-p)/p:+.1f}% samples/s (target: within 3%), {100*(ew-pw)/pw:+.1f}% wall")
pairs = [100 * (s - q) / q for q, s in zip(plain, sealed)]
print(f"  paired differences: median {statistics.median(pairs):+.1f}%  (each round: " +
      " ".join(f"{d:+.1f}%" for d in pairs) + ")")
# where a step's time goes (median over every step of every run, slowest
# worker, ms): encryption could only show in data_wait (loader behind) or in
# ckpt_stall; on a loaded machine the all-reduce wait carries the noise
phases = ("data_wait_s_max", "compute_s_max", "allreduce_wait_s_max", "optimizer_s_max", "ckpt_stall_s_max")
for mode in ("plain", "encrypted"):
    steps = []
    for r in range(1, len(rows) // 2 + 1):
        steps += [json.loads(l) for l in open(f"{sys.argv[3]}/{mode}-{r}/metrics.jsonl")]
    print(f"  {mode:9s} step phases (median ms): " +
          "  ".join(f"{k[:-6]} {statistics.median(s[k] for s in steps)*1e3:.3f}" for k in phases))
PY
echo "details: $work"
