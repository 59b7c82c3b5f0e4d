#!/usr/bin/env bash
# ringmaster vs PyTorch DDP on the CPU, one command:
#
#   bench/run.sh [--repeat N] [--set section.key=value ...]
#
# Builds ringmaster if needed, imports Fashion-MNIST if needed, then runs
#   1. build/bin/ringmaster run bench/mlp-1024.yaml (2 workers x 1 BLAS thread),
#   2. bench/torch_ddp.py: the same model, batch, optimizer and step count in
#      PyTorch DDP (gloo, 2 processes x 1 thread),
#   3. build/bin/ringmaster-bench-sgemm: single-thread OpenBLAS sgemm at the
#      model's shapes,
# and prints both throughputs, their ratio, and ringmaster's achieved FLOP/s
# against the sgemm ceiling. --set overrides go to ringmaster; the PyTorch
# run takes model, batch, steps, ranks, lr and momentum from ringmaster's
# resolved config, so the two stay the same job. --repeat N runs each side N
# times (alternating) and reports the best of each. Logs, run directories
# and bench.json stay in a temporary directory, printed at the end.
#
# Environment: BUILD_DIR (default build), FASHION_MNIST_DIR (default
# /usr/share/datasets/fashion-mnist), PYTHON (default /usr/bin/python3, Debian's
# python3-torch). OPENBLAS_* variables are passed through untouched.
set -euo pipefail

die() { echo "bench/run.sh: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

build=${BUILD_DIR:-build}
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
python=${PYTHON:-/usr/bin/python3}
config=bench/mlp-1024.yaml
repeat=1
sets=()
while [ $# -gt 0 ]; do
  case $1 in
    --repeat) [ $# -ge 2 ] || die "--repeat needs a number"; repeat=$2; shift 2 ;;
    --set) [ $# -ge 2 ] || die "--set needs section.key=value"; sets+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see bench/run.sh --help)" ;;
  esac
done
case $repeat in ''|*[!0-9]*|0) die "--repeat expects a positive integer, got '$repeat'" ;; esac

# --- prerequisites, checked before anything long runs ---------------------
for tool in cmake mpirun; do
  command -v "$tool" >/dev/null || die "$tool not found (see scripts/install-deps.sh)"
done
[ -x "$python" ] || die "$python not found: install Debian's PyTorch with 'apt-get install python3-torch' (or set PYTHON)"
if ! torch_version=$("$python" -c 'import numpy, torch; print(torch.__version__)' 2>/dev/null); then
  die "$python cannot import torch (and numpy): install it with 'apt-get install python3-torch'.
  Note: use Debian's /usr/bin/python3, not a pyenv/venv python3 from PATH (set PYTHON to override)."
fi
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  [ -f "$src/$f" ] || die "$src/$f is missing: apt-get install dataset-fashion-mnist (or set FASHION_MNIST_DIR)"
done

# --- build (incremental; configures once) ---------------------------------
if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "== configuring $build"
  cmake -S . -B "$build" >/dev/null
fi
echo "== building ringmaster and the sgemm benchmark in $build"
log=$(mktemp)
if ! cmake --build "$build" -j"$(nproc)" --target ringmaster ringmaster-coordinator ringmaster-worker \
     ringmaster-bench-sgemm >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  die "build failed"
fi
rm -f "$log"
bin=$build/bin

# --- data -----------------------------------------------------------------
for split in train:train t10k:test; do
  prefix=${split%%:*} name=${split##*:}
  if [ ! -f "data/fashion-mnist/$name/index.rmi" ]; then
    echo "== importing Fashion-MNIST $prefix -> data/fashion-mnist/$name"
    "$bin/ringmaster" data import-idx --images "$src/$prefix-images-idx3-ubyte.gz" \
      --labels "$src/$prefix-labels-idx1-ubyte.gz" --out "data/fashion-mnist/$name"
  fi
done

# --- a busy machine makes every figure below meaningless; say so ----------
load1=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load1" -v n="$(nproc)" 'BEGIN { exit !(l > 0.5 * n) }'; then
  echo "bench/run.sh: warning: 1-minute load average is $load1 on $(nproc) cores; other work on this" \
       "machine will distort the figures (both sides run one rank per core)" >&2
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-bench.XXXXXX")
echo "== results in $out"

run_ringmaster() { # $1: index
  local dir=$out/ringmaster-$1
  echo "== ringmaster run $config ${sets[*]:-} (run $1/$repeat)"
  if ! "$bin/ringmaster" run "$config" --run-dir "$dir" "${sets[@]}" >"$out/ringmaster-$1.log" 2>&1; then
    tail -n 30 "$out/ringmaster-$1.log" >&2
    die "ringmaster run failed (log: $out/ringmaster-$1.log)"
  fi
  [ -f "$dir/summary.json" ] || die "ringmaster wrote no $dir/summary.json (log: $out/ringmaster-$1.log)"
}

# The first ringmaster run fixes the job; PyTorch mirrors its resolved config.
run_ringmaster 1
job=$("$python" - "$out/ringmaster-1" <<'EOF'
import json, re, shlex, sys
d = sys.argv[1]
cfg, section = {}, ""
for line in open(f"{d}/config.yaml"):
    if not line.strip() or line.startswith("#") or line.startswith("---"):
        continue
    m = re.match(r"^(\s*)([A-Za-z_]+):\s*(.*?)\s*$", line)
    if not m:
        continue
    indent, key, val = m.groups()
    if not indent:
        section = key
        if val:
            cfg[key] = val
    else:
        cfg[f"{section}.{key}"] = val.strip('"')
s = json.load(open(f"{d}/summary.json"))
hidden = ",".join(h.strip() for h in cfg["model.hidden"].strip("[]").split(",") if h.strip())
warn = []
if cfg["train.optimizer"] != "sgd":
    warn.append(f"train.optimizer is {cfg['train.optimizer']}; the PyTorch baseline uses SGD with momentum")
if cfg["model.activation"] != "relu":
    warn.append(f"model.activation is {cfg['model.activation']}; the PyTorch baseline uses ReLU")
job = {"steps": s["steps"], "global_batch": s["global_batch"], "workers": s["workers"], "hidden": hidden,
       "lr": cfg["train.lr"], "momentum": cfg["train.momentum"], "seed": cfg["train.seed"], "warn": "; ".join(warn)}
print(" ".join(f"{k}={shlex.quote(str(v))}" for k, v in job.items()))
EOF
) || die "cannot read the resolved job from $out/ringmaster-1"
steps='' global_batch='' workers='' hidden='' lr='' momentum='' seed='' warn=''
eval "$job"
[ -z "$warn" ] || echo "bench/run.sh: warning: $warn" >&2
dims=$(sed -n 's/^model: .*(\([0-9-]*\)).*/\1/p' "$out/ringmaster-1.log" | head -n 1 | tr '-' ',')
[ -n "$dims" ] || dims="784,$hidden,10"

run_torch() { # $1: index
  echo "== PyTorch $torch_version DDP: $workers ranks, global batch $global_batch, $steps timed steps (run $1/$repeat)"
  if ! "$python" bench/torch_ddp.py --data "$src" --ranks "$workers" --global-batch "$global_batch" \
       --steps "$steps" --hidden "$hidden" --lr "$lr" --momentum "$momentum" --seed "$seed" \
       --json "$out/torch-$1.json" >"$out/torch-$1.log" 2>&1; then
    tail -n 30 "$out/torch-$1.log" >&2
    die "bench/torch_ddp.py failed (log: $out/torch-$1.log)"
  fi
}

run_torch 1
for ((i = 2; i <= repeat; i++)); do
  run_ringmaster "$i"
  run_torch "$i"
done

echo "== single-thread sgemm at batch $((global_batch / workers)), dims $dims"
"$bin/ringmaster-bench-sgemm" --batch "$((global_batch / workers))" --dims "$dims" --verbose \
  >"$out/sgemm.txt" 2>"$out/sgemm-detail.txt" || die "ringmaster-bench-sgemm failed"

"$python" - "$out" "$repeat" "$dims" <<'EOF'
import json, statistics, sys
out, repeat, dims = sys.argv[1], int(sys.argv[2]), [int(d) for d in sys.argv[3].split(",")]
rm = [json.load(open(f"{out}/ringmaster-{i}/summary.json")) for i in range(1, repeat + 1)]
pt = [json.load(open(f"{out}/torch-{i}.json")) for i in range(1, repeat + 1)]
best = max(range(repeat), key=lambda i: rm[i]["samples_per_second"])
r, t = rm[best], max(pt, key=lambda x: x["samples_per_second"])
sgemm = float(open(f"{out}/sgemm.txt").read().split()[0])
workers, params = r["workers"], r["parameters"]
rm_sps, pt_sps = r["samples_per_second"], t["samples_per_second"]
achieved = 6.0 * params * rm_sps
ceiling = sgemm * 1e9 * workers
# The products actually issued: 6 x weights, less the input layer's dA.
issued = 6.0 * sum(a * b for a, b in zip(dims, dims[1:])) - 2.0 * dims[0] * dims[1]

phases = {}
rows = [json.loads(l) for l in open(f"{out}/ringmaster-{best + 1}/metrics.jsonl") if l.strip()]
rows = [x for x in rows if "step_s_max" in x]
for k in ("step_s", "compute_s", "allreduce_wait_s", "optimizer_s", "data_wait_s"):
    phases[k] = statistics.mean(x[k] for x in rows) * 1e3

each = lambda xs: ", ".join(f"{x['samples_per_second']:.0f}" for x in xs)
print()
print(f"job: MLP {'-'.join(map(str, dims))} ({params} parameters), {workers} ranks x 1 thread, "
      f"global batch {r['global_batch']}, {r['steps']} steps, fp32")
print(f"ringmaster samples/s:       {rm_sps:10.1f}" + (f"   (best of {repeat}: {each(rm)})" if repeat > 1 else ""))
print(f"PyTorch DDP samples/s:      {pt_sps:10.1f}" + (f"   (best of {repeat}: {each(pt)})" if repeat > 1 else "")
      + f"   [{t['framework']}]")
print(f"ratio ringmaster/PyTorch:   {rm_sps / pt_sps:10.2f}   (target >= 1.5)")
print(f"ringmaster achieved:        {achieved / 1e9:10.1f} GFLOP/s   (6 x {params} parameters x samples/s)")
print(f"sgemm ceiling:              {ceiling / 1e9:10.1f} GFLOP/s   ({sgemm:.1f} GFLOP/s single-thread x {workers} ranks)")
print(f"fraction of ceiling:        {achieved / ceiling:10.3f}")
print(f"  (products actually issued: {issued / 1e6:.2f} MFLOP/sample -> {issued * rm_sps / ceiling:.3f} of the ceiling)")
print(f"ringmaster mean per step:   {phases['step_s']:.2f} ms = compute {phases['compute_s']:.2f} + all-reduce wait "
      f"{phases['allreduce_wait_s']:.2f} + optimizer {phases['optimizer_s']:.2f} + data wait {phases['data_wait_s']:.2f} ms")
print(f"PyTorch mean per step:      {1e3 * t['train_seconds'] / t['steps']:.2f} ms")
summary = {"ringmaster_samples_per_second": rm_sps, "pytorch_ddp_samples_per_second": pt_sps,
           "ratio": rm_sps / pt_sps, "ringmaster_achieved_flops_per_second": achieved,
           "sgemm_single_thread_flops_per_second": sgemm * 1e9, "ceiling_flops_per_second": ceiling,
           "fraction_of_ceiling": achieved / ceiling, "ringmaster_runs": [x["samples_per_second"] for x in rm],
           "pytorch_runs": [x["samples_per_second"] for x in pt], "ringmaster_phase_ms": phases}
json.dump(summary, open(f"{out}/bench.json", "w"), indent=2)
print(f"details: {out} (bench.json, sgemm-detail.txt, ringmaster-*/metrics.jsonl, torch-*.log)")
EOF
