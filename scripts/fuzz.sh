#!/usr/bin/env bash
# Runs the libFuzzer harnesses (tests/fuzz/fuzz_*.c) for a fixed time each.
#
#   scripts/fuzz.sh HARNESS|all SECONDS [MAX_EXECUTIONS]
#
# Builds them with clang (-fsanitize=fuzzer,address,undefined) into
# FUZZ_BUILD_DIR (default build-fuzz/), runs each from its seed corpus
# (tests/fuzz/corpus/<harness>, copied: the corpus the fuzzer grows stays in
# the build directory), and copies any crash, leak, timeout or OOM input
# into tests/fuzz/regressions/<harness>/, where CTest replays it on every
# build from then on. Prints executions and seconds per harness; exits 1 if
# any harness found something. Needs clang with libFuzzer
# (scripts/install-deps.sh --fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
all=(config idx shard_index checkpoint safetensors)
if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh HARNESS|all SECONDS [MAX_EXECUTIONS]   (harnesses: ${all[*]})" >&2
  exit 2
fi
if [ "$1" = all ]; then harnesses=("${all[@]}"); else harnesses=("$1"); fi
for h in "${harnesses[@]}"; do
  [ -f "tests/fuzz/fuzz_$h.c" ] || { echo "fuzz.sh: no harness '$h' (harnesses: ${all[*]})" >&2; exit 2; }
done
seconds=$2
max_runs=${3:--1}
build=${FUZZ_BUILD_DIR:-build-fuzz}
command -v clang >/dev/null || { echo "fuzz.sh: clang is not installed (scripts/install-deps.sh --fuzz)" >&2; exit 1; }

CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGMASTER_FUZZ=ON \
  -DRINGMASTER_SANITIZE_ADDRESS=ON -DRINGMASTER_SANITIZE_UNDEFINED=ON -DRINGMASTER_CUDA=OFF >/dev/null
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${targets[@]}" >/dev/null

export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
found=0
summary=()
for h in "${harnesses[@]}"; do
  corpus=$build/fuzz-corpus/$h artifacts=$build/fuzz-artifacts/$h
  mkdir -p "$corpus" "$artifacts"
  cp -n tests/fuzz/corpus/"$h"/* "$corpus"/ 2>/dev/null || true
  log=$build/fuzz-$h.log
  echo "fuzz.sh: $h for ${seconds}s (log: $log)"
  status=0
  "$build/bin/fuzz_$h" "$corpus" -max_total_time="$seconds" -runs="$max_runs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 -close_fd_mask=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  new=0
  for a in "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
    [ -e "$a" ] || continue
    mkdir -p "tests/fuzz/regressions/$h"
    cp "$a" "tests/fuzz/regressions/$h/"
    rm "$a"
    new=$((new + 1))
  done
  if [ "$status" -ne 0 ] || [ "$new" -gt 0 ]; then
    found=1
    echo "fuzz.sh: $h FOUND something (exit $status, $new input(s) kept in tests/fuzz/regressions/$h/):" >&2
    grep -E "ERROR:|runtime error|SUMMARY|==[0-9]+==" "$log" | head -20 >&2 || true
  fi
  summary+=("$(printf '%-12s %12s executions %6s s  %s' "$h" "${execs:-?}" "${secs:-?}" \
    "$([ "$status" -eq 0 ] && [ "$new" -eq 0 ] && echo clean || echo FOUND)")")
done
printf '%s\n' "${summary[@]}"
exit $found
