#!/usr/bin/env bash
# ringmaster's CPU GPT vs PyTorch DDP, one command:
#
#   bench/gpt-cpu.sh [--set section.key=value ...]
#
# Builds ringmaster if needed, prepares the Brown corpus (byte-level) if
# needed, then runs
#   1. ringmaster run bench/gpt-cpu.yaml: a GPT-2 of 4 layers, 4 heads,
#      dim 256, context 256, global batch 16 sequences, 2 workers x 1 thread;
#   2. bench/torch_gpt_ddp.py: the same model (tests/gpt_reference.py's
#      module), hyperparameters, data and step count in PyTorch
#      DistributedDataParallel (gloo, 2 ranks x 1 thread);
#   3. ringmaster-bench-sgemm at the model's block shapes (one core),
# and prints tokens/s and the model-FLOP rate of each side, each side's
# fraction of the machine's sgemm bound (the single-core rate x 2), and both
# validation losses after the same number of tokens. Goals: >= 2x
# PyTorch's tokens/s, >= 0.5 of the sgemm bound, validation loss within 2%.
#
# Environment: BUILD_DIR (default build), PYTHON (default /usr/bin/python3,
# Debian's python3-torch).
set -euo pipefail
die() { echo "bench/gpt-cpu.sh: $*" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
python=${PYTHON:-/usr/bin/python3}
config=bench/gpt-cpu.yaml
sets=()
while [ $# -gt 0 ]; do
  case $1 in
    --set) [ $# -ge 2 ] || die "--set needs section.key=value"; sets+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see bench/gpt-cpu.sh --help)" ;;
  esac
done
[ -x "$python" ] || die "$python not found: apt-get install python3-torch (or set PYTHON)"
torch_version=$("$python" -c 'import numpy, torch; print(torch.__version__)' 2>/dev/null) ||
  die "$python cannot import torch and numpy: apt-get install python3-torch python3-numpy"

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
echo "== building ringmaster in $build"
cmake --build "$build" -j"$(nproc)" --target ringmaster ringmaster-coordinator ringmaster-worker \
  ringmaster-bench-sgemm >/dev/null || die "build failed"
bin=$build/bin
RINGMASTER=$bin/ringmaster scripts/prepare-brown.sh data/brown

load1=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load1" -v n="$(nproc)" 'BEGIN { exit !(l > 0.5 * n) }'; then
  echo "bench/gpt-cpu.sh: warning: load average $load1 on $(nproc) cores: other work distorts the figures" >&2
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-gpt-bench.XXXXXX")
echo "== results in $out"

echo "== ringmaster run $config ${sets[*]:-}"
"$bin/ringmaster" run "$config" --run-dir "$out/ringmaster" "${sets[@]}" >"$out/ringmaster.log" 2>&1 ||
  { tail -n 30 "$out/ringmaster.log" >&2; die "ringmaster run failed (log: $out/ringmaster.log)"; }

# PyTorch mirrors the resolved job.
job=$("$python" - "$out/ringmaster" <<'PY'
import json, re, shlex, sys
d = sys.argv[1]
cfg, section = {}, ""
for line in open(f"{d}/config.yaml"):
    m = re.match(r"^(\s*)([A-Za-z_]+):\s*(.*?)\s*$", line)
    if not m or line.startswith("#"):
        continue
    indent, key, val = m.groups()
    if not indent:
        section = key
    else:
        cfg[f"{section}.{key}"] = val.strip('"')
vocab = next(int(l.split()[1]) for l in open(f"{cfg['data.dir']}/train/index.rmi") if l.startswith("vocab "))
s = json.load(open(f"{d}/summary.json"))
args = {"data": cfg["data.dir"], "ranks": s["workers"], "global-batch": s["global_batch"], "steps": s["steps"],
        "layers": cfg["model.layers"], "heads": cfg["model.heads"], "dim": cfg["model.dim"],
        "context": cfg["model.context"], "vocab": vocab, "lr": cfg["train.lr"], "warmup": cfg["train.warmup_steps"],
        "min-lr-ratio": cfg["train.min_lr_ratio"], "weight-decay": cfg["train.weight_decay"],
        "eval-tokens": cfg["train.eval_tokens"], "seed": cfg["train.seed"]}
print(" ".join(f"--{k} {shlex.quote(str(v))}" for k, v in args.items()))
PY
) || die "cannot read the resolved job"
echo "== PyTorch $torch_version DDP: $job"
# shellcheck disable=SC2086
"$python" bench/torch_gpt_ddp.py $job --json "$out/torch.json" >"$out/torch.log" 2>&1 ||
  { tail -n 30 "$out/torch.log" >&2; die "bench/torch_gpt_ddp.py failed (log: $out/torch.log)"; }

dim=$(sed -n 's/^  dim: \(.*\)$/\1/p' "$out/ringmaster/config.yaml" | head -1)
ctx=$(sed -n 's/^  context: \(.*\)$/\1/p' "$out/ringmaster/config.yaml" | head -1)
rows=$((ctx * 8))
echo "== single-thread sgemm at the block's shapes: $rows rows, $dim-$((4 * dim))-$dim"
"$bin/ringmaster-bench-sgemm" --batch "$rows" --dims "$dim,$((4 * dim)),$dim" >"$out/sgemm.txt" ||
  die "ringmaster-bench-sgemm failed"

"$python" - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
r = json.load(open(f"{out}/ringmaster/summary.json"))
t = json.load(open(f"{out}/torch.json"))
sgemm = float(open(f"{out}/sgemm.txt").read().split()[0]) * 1e9
workers = r["workers"]
bound = sgemm * workers
flops_per_token = r["achieved_flops_per_second"] / r["tokens_per_second"]
rows = [json.loads(l) for l in open(f"{out}/ringmaster/metrics.jsonl") if l.strip()]
ph = {k: statistics.median(x[k] for x in rows[5:]) * 1e3 for k in
      ("step_s", "compute_s", "allreduce_wait_s", "optimizer_s", "data_wait_s")}
rm_tps, pt_tps = r["tokens_per_second"], t["tokens_per_second"]
rm_val, pt_val = r["val_loss"], t["val_loss"]
print()
print(f"job: GPT-2 ({r['parameters']} parameters), {workers} workers x 1 thread, global batch {r['global_batch']} "
      f"sequences, {r['steps']} steps, fp32; {flops_per_token / 1e6:.2f} MFLOP/token (6N + attention)")
print(f"                      {'tokens/s':>10} {'GFLOP/s':>9} {'of bound':>9} {'val loss':>9}")
print(f"ringmaster            {rm_tps:10.0f} {rm_tps * flops_per_token / 1e9:9.1f} "
      f"{rm_tps * flops_per_token / bound:9.3f} {rm_val:9.4f}")
print(f"{t['framework'][:21]:21} {pt_tps:10.0f} {pt_tps * flops_per_token / 1e9:9.1f} "
      f"{pt_tps * flops_per_token / bound:9.3f} {pt_val:9.4f}")
print(f"ratio: {rm_tps / pt_tps:.2f}x (goal >= 2); ringmaster at {rm_tps * flops_per_token / bound:.2f} of the sgemm "
      f"bound (goal >= 0.5); val loss difference {100 * (rm_val - pt_val) / pt_val:+.2f}% (goal within 2%)")
print(f"sgemm bound: {sgemm / 1e9:.1f} GFLOP/s one core at the block's shapes x {workers} workers = {bound / 1e9:.1f}; "
      f"ringmaster's own start-up probe: {r['sgemm_peak_flops_per_second'] / 1e9:.1f} GFLOP/s, mfu {r['mfu']:.3f}")
print(f"ringmaster median step {ph['step_s']:.1f} ms = compute {ph['compute_s']:.1f} + all-reduce wait "
      f"{ph['allreduce_wait_s']:.2f} + optimizer {ph['optimizer_s']:.2f} + data wait {ph['data_wait_s']:.2f} ms")
json.dump({"ringmaster_tokens_per_second": rm_tps, "pytorch_tokens_per_second": pt_tps, "ratio": rm_tps / pt_tps,
           "flops_per_token": flops_per_token, "sgemm_bound_flops_per_second": bound,
           "ringmaster_fraction_of_bound": rm_tps * flops_per_token / bound,
           "pytorch_fraction_of_bound": pt_tps * flops_per_token / bound,
           "ringmaster_val_loss": rm_val, "pytorch_val_loss": pt_val}, open(f"{out}/bench.json", "w"), indent=2)
print(f"details: {out}")
PY
