#!/usr/bin/env bash
# Scaling over hosts, measured: the MLP of bench/mlp-1024.yaml (a 7.4 MB
# gradient per step) on 1, 2 and 4 namespace hosts (scripts/cluster), one
# worker of one BLAS thread per host and the coordinator on a host of its
# own (n0; workers on n1..n4), with the hosts' links unshaped, then shaped
# to 1gbit and to 100mbit each way (scripts/cluster/shape.sh). Every worker
# trains 128 samples a step whatever the host count (weak scaling), so a
# step computes the same on 1 host as on 4 and what grows is the reduction
# over the network (MPI over TCP between hosts).
#
#   sudo bench/scaling.sh [--steps N] [--hosts "1 2 4"] [--links "none 1gbit 100mbit"]
#                         [--reduce auto|mpi|hierarchical]
#
# --reduce is the job's launch.cpu_reduce (default auto: hierarchical
# across hosts, here a chain through the hosts and a broadcast back; mpi:
# Open MPI's own all-reduce).
#
# Prints per run: median step time (the slowest worker's), the median
# gradient reduction wait (metrics' allreduce_wait_s: the time a worker
# waits for the reduction after its backward, i.e. communication not hidden
# behind compute), its share of the step, samples/s (global batch / step
# time) and the scaling efficiency samples/s(N) / (N x samples/s(1 host)),
# against the 1-host run of the same link (the nearest in time: the load of
# a shared machine drifts).
# Not in CI (minutes).
# All the hosts share this machine's cores: with more workers than cores,
# compute slows down too, which the unshaped rows show apart from the
# network.
#
# Environment: BUILD_DIR (default build), FASHION_MNIST_DIR (default
# data/fashion-mnist), RINGMASTER_CLUSTER_DIR/_BRIDGE/_NET (the cluster's own
# state directory, bridge and subnet; see scripts/cluster/lib.sh).
set -euo pipefail
die() { echo "bench/scaling.sh: $*" >&2; exit 1; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
steps=60
host_counts="1 2 4"
links="none 1gbit 100mbit"
reduce=auto
while [ $# -gt 0 ]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --hosts) host_counts=$2; shift 2 ;;
    --links) links=$2; shift 2 ;;
    --reduce) reduce=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ "$steps" -gt 20 ] || die "--steps must be over 20 (the first 10 steps are warm-up)"
bin=$(cd "${BUILD_DIR:-build}/bin" 2>/dev/null && pwd) || die "no ${BUILD_DIR:-build}/bin: build ringmaster first"
data=$(cd "${FASHION_MNIST_DIR:-data/fashion-mnist}" 2>/dev/null && pwd) || die "no Fashion-MNIST shards (FASHION_MNIST_DIR)"
[ -f "$data/train/index.rmi" ] || die "no Fashion-MNIST shards in $data"
export RINGMASTER_CLUSTER_DIR=${RINGMASTER_CLUSTER_DIR:-/var/lib/ringmaster-cluster}
cluster=scripts/cluster
most=0
for n in $host_counts; do [ "$n" -le "$most" ] || most=$n; done

"$cluster/up.sh" $((most + 1)) --slots 1 >/dev/null
trap 'cd /; "$root/$cluster/down.sh" >/dev/null 2>&1 || true' EXIT
# each host has its own /tmp: what the hosts run must be where all see it
out=$(mktemp -d "$RINGMASTER_CLUSTER_DIR/shared/scaling.XXXXXX")
case "$bin/" in /tmp/*) cp -a "$bin" "$out/bin" && bin=$out/bin ;; esac
case "$data/" in /tmp/*) cp -a "$data" "$out/data" && data=$out/data ;; esac
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

printf '%-6s %-8s %10s %10s %10s %8s %10s %10s\n' hosts link step_ms compute_ms reduce_ms exposed samples/s efficiency
for link in $links; do
  for n in $host_counts; do
    for ((h = 0; h <= most; h++)); do
      "$cluster/shape.sh" "n$h" "$([ "$link" = none ] && echo off || echo "$link")" >/dev/null
    done
    for ((h = 0; h <= n; h++)); do echo "n$h slots=1"; done >"$out/hosts-$n"
    run=$out/run-$n-$link
    (cd "$out" && "$root/$cluster/exec.sh" n0 "$bin/ringmaster" run "$root/bench/mlp-1024.yaml" --run-dir "$run" \
      --set launch.hostfile="$out/hosts-$n" --set launch.workers="$n" --set train.global_batch=$((128 * n)) \
      --set train.steps="$steps" --set data.dir="$data" --set data.eval_split= --set checkpoint.every_steps=0 \
      --set observe.progress_every_steps=1000 --set launch.cpu_reduce="$reduce" >"$run.log" 2>&1) || { tail -n 20 "$run.log" >&2; die "run failed: $run.log"; }
    /usr/bin/python3 - "$run/metrics.jsonl" "$n" "$link" "$out/base-$link" <<'PY'
import json, os, statistics as st, sys
path, n, link, base_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
m = [json.loads(l) for l in open(path)][10:]  # the first 10: warm-up
step = st.median(x["step_s_max"] for x in m)
compute = st.median(x["compute_s"] for x in m)
reduce = st.median(x["allreduce_wait_s"] for x in m)
rate = 128 * n / step
if n == 1 and not os.path.exists(base_file):
    open(base_file, "w").write(str(rate))
base = float(open(base_file).read()) if os.path.exists(base_file) else None
eff = f"{rate / (n * base):.2f}" if base else "-"
print(f"{n:<6} {link:<8} {step * 1e3:10.1f} {compute * 1e3:10.1f} {reduce * 1e3:10.1f} {100 * reduce / step:7.0f}% "
      f"{rate:10.0f} {eff:>10}")
PY
  done
done
echo "load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo "runs in $out"
