# Helpers for the multi-host tests: a cluster of namespace hosts on this
# machine (scripts/cluster), made for the test and always taken down. CTest
# runs each test as
#   bash TEST.sh BIN_DIR DATA_DIR
# The test skips (77) where namespaces cannot be made (not root, no
# unshare). Each host has its own /tmp, as real hosts have their own
# disks: a build or data directory under /tmp is copied to the cluster's
# shared directory first.
set -euo pipefail
BIN=$1
DATA=$2
RINGMASTER=$BIN/ringmaster
PYTHON=${PYTHON:-python3}
export OPENBLAS_NUM_THREADS=1
CLUSTER=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../scripts/cluster" && pwd)
export RINGMASTER_CLUSTER_DIR=${RINGMASTER_CLUSTER_DIR:-/var/lib/ringmaster-cluster-test}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

if [ "$(id -u)" != 0 ] || ! unshare --net --uts --mount --pid --fork true 2>/dev/null; then
  echo "SKIP: cannot make namespace hosts here (needs root and unshare)"
  exit 77
fi
if [ ! -f "$DATA/train/index.rmi" ]; then
  echo "SKIP: no Fashion-MNIST shards in $DATA"
  exit 77
fi
BIN=$(cd "$BIN" && pwd)
DATA=$(cd "$DATA" && pwd)
copies=$RINGMASTER_CLUSTER_DIR/shared/copies
case "$BIN/" in /tmp/*)
  mkdir -p "$copies" && rm -rf "$copies/bin" && cp -a "$BIN" "$copies/bin" && BIN=$copies/bin ;;
esac
case "$DATA/" in /tmp/*)
  mkdir -p "$copies" && rm -rf "$copies/data" && cp -a "$DATA" "$copies/data" && DATA=$copies/data ;;
esac
RINGMASTER=$BIN/ringmaster

# up K: a fresh cluster of K hosts; down on any exit, and WORK in its
# shared directory (removed when the test passes).
up() {
  "$CLUSTER/up.sh" "$@" >/dev/null
  WORK=$(mktemp -d "$RINGMASTER_CLUSTER_DIR/shared/test.XXXXXX")
  cd "$WORK"
}
trap 'status=$?; cd /; "$CLUSTER/down.sh"; rm -rf "$copies"; if [ $status -eq 0 ] || [ $status -eq 77 ]; then rm -rf "${WORK:-/nonexistent}"; else echo "(scratch kept in ${WORK:-?})"; fi' EXIT

# on HOST CMD...: runs CMD on a cluster host, in the current directory.
on() {
  "$CLUSTER/exec.sh" "$@"
}

# expect_in FILE TEXT
expect_in() {
  grep -qF -- "$2" "$1" || { cat "$1"; fail "expected '$2' in $1"; }
}

# job FILE WORKERS STEPS [HANG_TIMEOUT_S]: the small MLP job of the
# fault tests (checkpoints every 50 steps, 2 restarts). Its loaders read at
# most 4 MB/s each (about 100 steps/s on 2 workers), so that on a fast,
# quiet machine a fault the test injects at step K still lands mid-run.
job() {
  cat >"$1" <<YAML
model:
  hidden: [128]
data:
  dir: $DATA
  eval_split: ""
train:
  global_batch: 96
  steps: $3
  optimizer: adamw
  lr: 0.002
  seed: 1
launch:
  workers: $2
checkpoint:
  every_steps: 50
fault:
  max_restarts: 2
  restart_backoff_s: 0.5
  hang_timeout_s: ${4:-20}
observe:
  progress_every_steps: 100
debug:
  loader_throttle_mb_s: 4
YAML
}

# kill_when RUN STEP HOST [--silent]: kills HOST (kill-host.sh) once RUN
# has logged STEP steps; prints the time.
kill_when() {
  local i
  for ((i = 0; i < 1200; i++)); do
    if [ -f "$1/metrics.jsonl" ] && [ "$(wc -l <"$1/metrics.jsonl")" -ge "$2" ]; then
      "$CLUSTER/kill-host.sh" ${4:+"$4"} "$3"
      date +%s.%N
      return
    fi
    sleep 0.1
  done
  fail "the run never reached step $2"
}

# slurm_up K [--slots S]: a fresh cluster of K hosts running Slurm
# (scripts/cluster/slurm-up.sh: slurmctld on n0, a slurmd per host); skips
# (77) where Slurm or munge is not installed. down.sh stops it with the hosts.
slurm_up() {
  local tool
  for tool in slurmctld slurmd sbatch munged; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool (scripts/install-deps.sh installs slurm-wlm, munge)"; exit 77; }
  done
  up "$@"
  "$CLUSTER/slurm-up.sh" >"$WORK/slurm-up.txt" 2>&1 || { cat "$WORK/slurm-up.txt"; fail "Slurm did not start"; }
  # a copy every host sees (sbatch reads it on n0; the repository may be under /tmp)
  cp "$CLUSTER/../slurm/ringmaster.sbatch" "$WORK/ringmaster.sbatch"
}

# sbatch_job [SBATCH OPTIONS...] RUN_DIR CONFIG: submits scripts/slurm/ringmaster.sbatch
# from n0 (output WORK/slurm-JOBID.out) and prints the job id.
sbatch_job() {
  local n=$#
  local config=${!n} opts=("${@:1:n-2}") prev=$((n - 1))
  local run_dir=${!prev}
  on n0 env RINGMASTER="$RINGMASTER" RINGMASTER_RUN_DIR="$run_dir" sbatch --parsable --chdir="$WORK" \
    --output="$WORK/slurm-%j.out" --export=ALL "${opts[@]}" "$WORK/ringmaster.sbatch" "$config"
}

# mlp_job FILE STEPS: the small MLP job of the Slurm tests, `job`'s without
# launch.workers (the workers come from the allocation: ringmaster.sbatch
# passes --workers)
mlp_job() {
  job "$1" 1 "$2"
  sed -i '/^launch:$/{N;d}' "$1"
}

# job_state JOB: the job's state as Slurm says it (RUNNING, COMPLETED, ...)
job_state() { on n0 scontrol show job "$1" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
# checkpoint_past RUN_DIR STEP JOB: waits until the run's newest checkpoint is past STEP
checkpoint_past() {
  local i latest
  for ((i = 0; i < 2400; i++)); do
    latest=$(cat "$1/checkpoints/latest" 2>/dev/null || true)
    [ -n "$latest" ] && [ $((10#${latest#step-})) -ge "$2" ] && return
    # Slurm is asked once a second (a call takes a while on a busy machine)
    if ((i % 20 == 19)); then
      case $(job_state "$3") in
        PENDING | RUNNING | CONFIGURING) ;;
        *) cat "$WORK/slurm-$3.out"; fail "job $3 ended $(job_state "$3") before a checkpoint past step $2" ;;
      esac
    fi
    sleep 0.05
  done
  fail "job $3 never checkpointed past step $2"
}
# wait_end JOB: waits until the job has ended; prints its state. A job
# whose batch script has ended is COMPLETING while Slurm cleans up (with a
# dead node to hear from, until Slurm marks it DOWN: SlurmdTimeout): the
# script's last line is the end then.
wait_end() {
  local i state
  for ((i = 0; i < 600; i++)); do
    state=$(job_state "$1")
    case $state in
      COMPLETED | FAILED | CANCELLED | NODE_FAIL | TIMEOUT | OUT_OF_MEMORY) break ;;
      COMPLETING) grep -q "ringmaster exited with status" "$WORK/slurm-$1.out" && break ;;
    esac
    sleep 0.2
  done
  echo "$state"
}
