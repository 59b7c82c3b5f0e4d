#!/usr/bin/env bash
# The sanitizer leg of the test command: builds ringmaster with
# AddressSanitizer + UndefinedBehaviorSanitizer into SANITIZE_BUILD_DIR (default
# build-sanitize/), runs the unit test suites and one short mpirun training
# run (encrypted shards and checkpoints, a stop and a resume, then the
# checkpoint and audit tools) under them, and fails on any report.
#
# Open MPI keeps process-lifetime allocations that LeakSanitizer sees as
# leaks: scripts/sanitizers/lsan.supp suppresses those by library name
# only, so leaks in ringmaster's own code still fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${SANITIZE_BUILD_DIR:-build-sanitize}
jobs=${JOBS:-$(nproc)}
# Warnings are errors in the main build; here GCC's flow analysis sees the
# sanitizers' checks and raises false alarms (alloc-size-larger-than), so
# they stay warnings.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGMASTER_WERROR=OFF \
  -DRINGMASTER_SANITIZE_ADDRESS=ON -DRINGMASTER_SANITIZE_UNDEFINED=ON >/dev/null
cmake --build "$build" -j "$jobs"

# fast_unwind_on_malloc=0: full allocation stacks through Open MPI's
# frame-pointer-less code, so a suppression can see the libmpi frame.
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:exitcode=66:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:fast_unwind_on_malloc=0:malloc_context_size=40
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=67
export LSAN_OPTIONS=suppressions=$root/scripts/sanitizers/lsan.supp:print_suppressions=0
# Check forks each test case: a report in a child fails that case. The
# fuzz regression inputs replay here too, under the sanitizers that found them.
export CK_DEFAULT_TIMEOUT=120 OPENBLAS_NUM_THREADS=1

cd "$build"
ctest --output-on-failure --timeout 600 -j 1 -R '^(test_config|test_idx|test_order|test_mlp_grad|test_security|test_grad_sync|test_tokens|test_gpt2_tokenizer|test_gpt_grad|test_gpt_reference|test_gpt_infer|test_flash_attn|fuzz_replay_.*)$'

# One short training run under the sanitizers, with everything the
# security work added on its path.
idx=${RINGMASTER_TEST_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$idx/train-images-idx3-ubyte.gz" ]; then
  echo "sanitize.sh: no Fashion-MNIST in $idx: skipping the mpirun run" >&2
  exit 0
fi
work=$(mktemp -d /tmp/ringmaster-sanitize.XXXXXX)
trap 'status=$?; if [ $status -eq 0 ]; then rm -rf "$work"; else echo "sanitize.sh: logs kept in $work" >&2; fi' EXIT
rm=$(pwd)/bin/ringmaster
reports() { # fails if any log in $work holds a sanitizer report
  if grep -l -E "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer" "$work"/*.log; then
    echo "sanitize.sh: sanitizer report (see above)" >&2
    exit 1
  fi
}
"$rm" keygen "$work/key" >"$work/keygen.log" 2>&1
for split in train:train t10k:test; do
  "$rm" data import-idx --images "$idx/${split%%:*}-images-idx3-ubyte.gz" \
    --labels "$idx/${split%%:*}-labels-idx1-ubyte.gz" --out "$work/data/${split##*:}" \
    --encrypt --key-file "$work/key" >>"$work/import.log" 2>&1
done
job=(run "$root/tests/fault/job.yaml" --run-dir "$work/run" --set data.dir="$work/data"
     --set security.key_file="$work/key" --set fault.max_restarts=0 --set train.steps=120
     --set checkpoint.every_steps=30)
# stopped with SIGUSR1 after a checkpoint (exit 75), then resumed to the end
"$rm" "${job[@]}" >"$work/run1.log" 2>&1 &
pid=$!
for ((i = 0; i < 3000; i++)); do
  [ -e "$work/run/checkpoints/step-00000030/manifest.json" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -USR1 "$pid" 2>/dev/null || true
status=0
wait "$pid" || status=$?
reports
[ "$status" -eq 75 ] || { cat "$work/run1.log"; echo "sanitize.sh: the first run did not stop on SIGUSR1 ($status)" >&2; exit 1; }
status=0
"$rm" "${job[@]}" >"$work/run2.log" 2>&1 || status=$?
reports
[ "$status" -eq 0 ] || { cat "$work/run2.log"; echo "sanitize.sh: the resumed run failed ($status)" >&2; exit 1; }
grep -q '"resumed_from_step": *[1-9]' "$work/run/summary.json" || { cat "$work/run/summary.json"; echo "sanitize.sh: no resume" >&2; exit 1; }
"$rm" ckpt verify "$work/run" >"$work/verify.log" 2>&1
"$rm" ckpt export "$work/run" "$work/model.safetensors" >"$work/export.log" 2>&1
"$rm" audit verify "$work/run" >"$work/audit.log" 2>&1
reports
echo "sanitize.sh: unit tests and a resumed encrypted mpirun training run are clean under ASan + UBSan"
# A GPT on token data: import, two workers through shared memory, export.
gpt_texts=()
for f in /usr/share/common-licenses/*; do [ -f "$f" ] && [ ! -L "$f" ] && gpt_texts+=("$f"); done
if [ ${#gpt_texts[@]} -gt 0 ]; then
  "$rm" data import-text "${gpt_texts[@]}" --out "$work/text" --tokenizer bytes >"$work/text-import.log" 2>&1
  status=0
  "$rm" run "$root/tests/fault/job.yaml" --run-dir "$work/gpt" --set data.dir="$work/text" --set data.eval_split=val \
    --set model.type=gpt --set model.layers=2 --set model.heads=2 --set model.dim=32 --set model.context=32 \
    --set train.global_batch=8 --set train.steps=20 --set train.grad_accum=2 --set train.grad_clip=1 \
    --set train.eval_tokens=2048 --set fault.max_restarts=0 --set checkpoint.every_steps=10 \
    >"$work/gpt.log" 2>&1 || status=$?
  reports
  [ "$status" -eq 0 ] || { cat "$work/gpt.log"; echo "sanitize.sh: the GPT run failed ($status)" >&2; exit 1; }
  mkdir -p "$work/gpt-export"
  "$rm" ckpt export "$work/gpt" "$work/gpt-export/model.safetensors" >"$work/gpt-export.log" 2>&1
  reports
fi
echo "sanitize.sh: and a GPT run with its export"

