# Shared helpers for the end-to-end tests. CTest runs each one as
#   bash TEST.sh BIN_DIR DATA_DIR
# where BIN_DIR holds ringmaster and its ranks and DATA_DIR the imported
# Fashion-MNIST (train/ and test/). A test works in a fresh scratch
# directory, removed when it passes and kept (and named) when it fails.
set -euo pipefail
BIN=$1
DATA=$2
RINGMASTER=$BIN/ringmaster
PYTHON=${PYTHON:-python3}
export OPENBLAS_NUM_THREADS=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-it.XXXXXX")
trap 'status=$?; if [ $status -eq 0 ] || [ $status -eq 77 ]; then rm -rf "$WORK"; else echo "(scratch kept in $WORK)"; fi' EXIT
cd "$WORK"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

if [ ! -f "$DATA/train/index.rmi" ] || [ ! -f "$DATA/test/index.rmi" ]; then
  echo "SKIP: no Fashion-MNIST shards in $DATA (the fashion_mnist_data fixture imports them when" \
    "/usr/share/datasets/fashion-mnist exists)"
  exit 77
fi

# write_job FILE: a small Fashion-MNIST job (MLP 784-128-10, AdamW) whose
# length the tests set with --set train.steps=N (a later length wins over
# the file's epochs).
write_job() {
  cat >"$1" <<YAML
# end-to-end test job
model:
  hidden: [128]
  activation: relu
data:
  dir: $DATA
  train_split: train
  eval_split: test
train:
  global_batch: 128
  epochs: 1
  optimizer: adamw
  lr: 0.002
  warmup_steps: 20
  schedule: cosine
  seed: 1
launch:
  workers: 2
fault:
  max_restarts: 0
observe:
  progress_every_steps: 100
YAML
}

# expect_in FILE TEXT: FILE contains TEXT literally, or the test fails
# showing FILE.
expect_in() {
  if ! grep -qF -- "$2" "$1"; then
    echo "---- $1 ----" >&2
    cat "$1" >&2
    fail "expected '$2' in $1"
  fi
}
