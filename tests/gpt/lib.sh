# Shared helpers for the GPT end-to-end tests. CTest runs each one as
#   bash TEST.sh BIN_DIR DATA_DIR
# where DATA_DIR holds a byte-level token dataset (train/ and val/) that
# the gpt_text_data fixture imports from the license texts every Debian
# system has (/usr/share/common-licenses). A test works in a fresh scratch
# directory, removed when it passes and kept (and named) when it fails.
set -euo pipefail
BIN=$(cd "$1" && pwd)
DATA=$(cd "$2" && pwd)
RM=$BIN/ringmaster
PYTHON=${PYTHON:-python3}
export OPENBLAS_NUM_THREADS=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-gpt.XXXXXX")
trap 'status=$?; if [ $status -eq 0 ] || [ $status -eq 77 ]; then rm -rf "$WORK"; else echo "(scratch kept in $WORK)"; fi' EXIT
cd "$WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }

if [ ! -f "$DATA/train/index.rmi" ]; then
  echo "SKIP: no token dataset in $DATA (the gpt_text_data fixture makes it)"
  exit 77
fi

# A tiny GPT-2 (2 layers, 2 heads, dim 32, context 32) that takes a second
# or two for its steps; tests set the length with --set train.steps=N.
cat >"$WORK/job.yaml" <<YAML
model: {type: gpt, layers: 2, heads: 2, dim: 32, context: 32}
data: {dir: $DATA, train_split: train, eval_split: val}
train: {global_batch: 12, steps: 40, optimizer: adamw, lr: 0.003, beta2: 0.95, weight_decay: 0.1,
        warmup_steps: 5, grad_clip: 1.0, eval_tokens: 4096, seed: 7}
launch: {workers: 2}
fault: {max_restarts: 0}
observe: {progress_every_steps: 1000}
YAML

# run NAME [ringmaster run options...]: runs the job to its end.
run() {
  local name=$1
  shift
  "$RM" run "$WORK/job.yaml" --run-dir "$WORK/$name" "$@" >"$WORK/$name.log" 2>&1 ||
    { cat "$WORK/$name.log"; fail "$name: ringmaster run exited with status $?"; }
}

json_field() { # json_field FILE KEY: a scalar field of summary.json
  sed -n "s/.*\"$2\": *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$1" | head -1
}
digest_of() { json_field "$WORK/$1/summary.json" weights_digest; }

# expect_in FILE TEXT: FILE contains TEXT literally, or the test fails.
expect_in() {
  if ! grep -qF -- "$2" "$1"; then
    echo "---- $1 ----" >&2
    cat "$1" >&2
    fail "expected '$2' in $1"
  fi
}
