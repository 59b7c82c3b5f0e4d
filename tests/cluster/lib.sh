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

# mlp_job FILE WORKERS STEPS HANG_TIMEOUT_S: the fault tests' job, the small
# MLP with a checkpoint every 50 steps and two restarts
mlp_job() {
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
  hang_timeout_s: $4
observe:
  progress_every_steps: 100
YAML
}
