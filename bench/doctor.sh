#!/usr/bin/env bash
# How close `ringmaster doctor` comes to the job it predicts, one command:
#
#   bench/doctor.sh [--runs N] [--only NAME,NAME...] [--set section.key=value ...]
#
# For each job below, N times (default 3): `ringmaster doctor CONFIG
# --run-dir DIR` and at once `ringmaster run CONFIG --run-dir DIR`, so that
# the run's summary.json holds both figures (its "prediction" member). Then
# prints per job the medians of the N predictions and of the N measured
# figures, and the error (predicted - measured) / measured in percent.
#
#   fashion-mnist  configs/fashion_mnist.yaml (the default job)
#   mlp-1024       bench/mlp-1024.yaml
#   gpt            bench/gpt-cpu.yaml (byte-level GPT-2 on the Brown corpus),
#                  GPT_STEPS steps (default 100 of its 300, evaluated on
#                  16384 tokens: the steps are the same, the run shorter)
#   gpt-zero1      bench/gpt-cpu.yaml with train.zero 1 and launch.cpu_reduce
#                  mpi: the reduce-scatter and all-gather over MPI
#   gpt-zero1-shm  bench/gpt-cpu.yaml with train.zero 1 as one host runs it
#                  (cpu_reduce auto: the slices summed in shared memory)
#
# The measured figure is summary.json's samples_per_second: the trained
# samples over the slowest worker's summed step times, each step from
# asking for the batch to the end of the optimizer (start-up, evaluations
# and the time between steps are not in it; a checkpoint's stall is). The
# doctor predicts that steady state; it does not predict checkpoints.
#
# Environment: BUILD_DIR (default build). Data: data/fashion-mnist
# (scripts/prepare-fashion-mnist.sh) and data/brown (scripts/prepare-brown.sh).
# Results stay in a temporary directory, printed at the end.
set -euo pipefail
die() { echo "bench/doctor.sh: $*" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
gpt_steps=${GPT_STEPS:-100}
runs=3
only=""
sets=()
while [ $# -gt 0 ]; do
  case $1 in
    --runs) [ $# -ge 2 ] || die "--runs needs a number"; runs=$2; shift 2 ;;
    --only) [ $# -ge 2 ] || die "--only needs job names"; only=$2; shift 2 ;;
    --set) [ $# -ge 2 ] || die "--set needs section.key=value"; sets+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see bench/doctor.sh --help)" ;;
  esac
done
rm=$build/bin/ringmaster
[ -x "$rm" ] || die "$rm not found: build first (cmake -S . -B $build && cmake --build $build)"
[ -f data/fashion-mnist/train/index.rmi ] || die "no data/fashion-mnist: run scripts/prepare-fashion-mnist.sh"

gpt="--set train.steps=$gpt_steps --set train.eval_tokens=16384"
jobs=(
  "fashion-mnist|configs/fashion_mnist.yaml|"
  "mlp-1024|bench/mlp-1024.yaml|"
  "gpt|bench/gpt-cpu.yaml|$gpt"
  "gpt-zero1|bench/gpt-cpu.yaml|$gpt --set train.zero=1 --set launch.cpu_reduce=mpi"
  "gpt-zero1-shm|bench/gpt-cpu.yaml|$gpt --set train.zero=1"
)
out=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-doctor-bench.XXXXXX")
echo "== results in $out (load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores)"
for job in "${jobs[@]}"; do
  IFS='|' read -r name config extra <<<"$job"
  case ,$only, in ,, | *,$name,*) ;; *) continue ;; esac
  case $config in bench/gpt*)
    [ -f data/brown/train/index.rmi ] || die "no data/brown: run scripts/prepare-brown.sh" ;;
  esac
  # shellcheck disable=SC2206 # the extra options are words
  opts=($extra "${sets[@]}")
  for i in $(seq 1 "$runs"); do
    dir=$out/$name-$i
    echo "== $name $i/$runs: ringmaster doctor $config ${opts[*]} --run-dir $dir"
    "$rm" doctor "$config" "${opts[@]}" --run-dir "$dir" >"$out/$name-$i.doctor.log" 2>&1 ||
      { tail -n 30 "$out/$name-$i.doctor.log" >&2; die "doctor failed (log: $out/$name-$i.doctor.log)"; }
    grep -E "^(predicted throughput|bottleneck):" "$out/$name-$i.doctor.log" | sed 's/^/   /'
    echo "   load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "== $name $i/$runs: ringmaster run $config ${opts[*]} --run-dir $dir"
    "$rm" run "$config" "${opts[@]}" --run-dir "$dir" >"$out/$name-$i.run.log" 2>&1 ||
      { tail -n 30 "$out/$name-$i.run.log" >&2; die "run failed (log: $out/$name-$i.run.log)"; }
    grep -E "^done:" "$out/$name-$i.run.log" | sed 's/^/   /'
    echo "   load average $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done

echo
python3 - "$out" "$runs" <<'PY'
import glob, json, os, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
names = []
for d in sorted(glob.glob(f"{out}/*-[0-9]*")):
    if os.path.isdir(d):
        name = d.rsplit("-", 1)[0].rsplit("/", 1)[1]
        if name not in names:
            names.append(name)
print(f"{'job':<15} {'predicted':>11} {'measured':>11} {'error':>8}   each run: predicted/measured samples/s, verdict")
for name in names:
    pred, meas, each = [], [], []
    for i in range(1, runs + 1):
        s = json.load(open(f"{out}/{name}-{i}/summary.json"))
        p = s["prediction"]
        pred.append(p["predicted_samples_per_second"])
        meas.append(s["samples_per_second"])
        each.append(f"{pred[-1]:.1f}/{meas[-1]:.1f} {p['bottleneck']}")
    mp, mm = statistics.median(pred), statistics.median(meas)
    print(f"{name:<15} {mp:>11.1f} {mm:>11.1f} {100 * (mp - mm) / mm:>+7.1f}%   " + ", ".join(each))
PY
