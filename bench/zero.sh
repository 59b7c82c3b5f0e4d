#!/usr/bin/env bash
# ZeRO-1 against plain data parallel on the CPU, one command:
#
#   bench/zero.sh [--data DIR] [--set section.key=value ...]
#
# Runs the bench GPT (bench/gpt-cpu.yaml: 4 layers, 4 heads, dim 256,
# context 256, AdamW) over the MPI transport (launch.cpu_reduce mpi) with
# train.zero 0 and 1 on 2 and 3 workers, and prints tokens/s and the
# optimizer state each worker allocated (summary.json's
# optimizer_state_bytes_per_worker, as the workers measured it) side by
# side, with the final weights' agreement. --data defaults to data/brown
# (scripts/prepare-brown.sh makes it); any byte-level token dataset with
# train/ and val/ splits will do. --set overrides go to every run (e.g.
# --set train.steps=50 for a quick look).
#
# Environment: BUILD_DIR (default build), PYTHON (default python3).
set -euo pipefail
die() { echo "bench/zero.sh: $*" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
python=${PYTHON:-python3}
data=data/brown
sets=()
while [ $# -gt 0 ]; do
  case $1 in
    --data) [ $# -ge 2 ] || die "--data needs a directory"; data=$2; shift 2 ;;
    --set) [ $# -ge 2 ] || die "--set needs section.key=value"; sets+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see bench/zero.sh --help)" ;;
  esac
done
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
echo "== building ringmaster in $build"
cmake --build "$build" -j"$(nproc)" --target ringmaster ringmaster-coordinator ringmaster-worker >/dev/null ||
  die "build failed"
bin=$build/bin
if [ "$data" = data/brown ]; then
  RINGMASTER=$bin/ringmaster scripts/prepare-brown.sh data/brown
fi
[ -f "$data/train/index.rmi" ] || die "no token dataset in $data"
data=$(cd "$data" && pwd)
load1=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load1" -v n="$(nproc)" 'BEGIN { exit !(l > 0.5 * n) }'; then
  echo "bench/zero.sh: warning: load average $load1 on $(nproc) cores: other work distorts the figures" >&2
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-zero-bench.XXXXXX")
echo "== results in $out"
export OPENBLAS_NUM_THREADS=1
for workers in 2 3; do
  for zero in 0 1; do
    name=w$workers-z$zero
    echo "== $name: $workers workers, train.zero $zero"
    "$bin/ringmaster" run bench/gpt-cpu.yaml --run-dir "$out/$name" --workers "$workers" \
      --set data.dir="$data" --set launch.cpu_reduce=mpi --set train.zero="$zero" \
      --set train.global_batch=12 --set observe.progress_every_steps=1000000 "${sets[@]}" \
      >"$out/$name.log" 2>&1 || { tail -n 30 "$out/$name.log" >&2; die "$name failed (log: $out/$name.log)"; }
  done
done
"$python" - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
rows = []
print()
print(f"{'workers':>7} {'zero':>4} {'tokens/s':>10} {'step ms':>8} {'reduce ms':>9} {'opt ms':>7} {'gather ms':>9} "
      f"{'opt state/worker':>17} {'of zero 0':>9}  weights")
for workers in (2, 3):
    base = None
    for zero in (0, 1):
        name = f"w{workers}-z{zero}"
        s = json.load(open(f"{out}/{name}/summary.json"))
        m = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl") if l.strip()][5:]
        med = lambda k: statistics.median(x[k] for x in m) * 1e3
        state = s["optimizer_state_bytes_per_worker"]
        base = base or state
        rows.append({"workers": workers, "zero": zero, "tokens_per_second": s["tokens_per_second"],
                     "step_ms": med("step_s"), "allreduce_wait_ms": med("allreduce_wait_s"),
                     "optimizer_ms": med("optimizer_s"), "param_gather_ms": med("param_gather_s"),
                     "optimizer_state_bytes_per_worker": state,
                     "final_train_loss": s["final_train_loss"], "weights_digest": s["weights_digest"]})
        print(f"{workers:7d} {zero:4d} {s['tokens_per_second']:10.0f} {med('step_s'):8.1f} "
              f"{med('allreduce_wait_s'):9.2f} {med('optimizer_s'):7.2f} {med('param_gather_s'):9.2f} "
              f"{state / 2**20:13.2f} MiB "
              f"{state / base:9.3f}  {s['weights_digest']} (loss {s['final_train_loss']:.5f})")
print("reduce ms: blocked on the gradient after backward (ZeRO-1: the reduce-scatter's tail and the norm); "
      "gather ms: ZeRO-1's parameter all-gather after the update; medians after 5 steps")
json.dump(rows, open(f"{out}/bench.json", "w"), indent=2)
print(f"details: {out}")
PY
