# Shared helpers for the fault tests. Each test is run by CTest as
#   bash TEST.sh BIN_DIR DATA_DIR
# and works in a fresh scratch directory it removes on success.
set -euo pipefail
BIN=$(cd "$1" && pwd)
DATA=$(cd "$2" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d /tmp/ringmaster-fault.XXXXXX)
RM=$BIN/ringmaster
trap 'status=$?; if [ $status -eq 0 ]; then rm -rf "$WORK"; else echo "(scratch kept in $WORK)"; fi' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# run_job RUN_DIR [ringmaster run options...]: runs the small job to the end.
run_job() {
  local dir=$1; shift
  "$RM" run "$HERE/job.yaml" --set data.dir="$DATA" --run-dir "$dir" "$@"
}

# start_job RUN_DIR LOG [options...]: the same in the background; sets JOB_PID.
start_job() {
  local dir=$1 log=$2; shift 2
  "$RM" run "$HERE/job.yaml" --set data.dir="$DATA" --run-dir "$dir" "$@" >"$log" 2>&1 &
  JOB_PID=$!
}

# wait_job: waits for the background job; sets JOB_STATUS.
wait_job() {
  set +e
  wait "$JOB_PID"
  JOB_STATUS=$?
  set -e
}

# wait_for PATH [SECONDS]: until PATH exists.
wait_for() {
  local path=$1 limit=${2:-60} i
  for ((i = 0; i < limit * 50; i++)); do
    [ -e "$path" ] && return 0
    sleep 0.02
  done
  fail "timed out waiting for $path"
}

json_field() { # json_field FILE KEY: a scalar field of summary.json
  sed -n "s/.*\"$2\": *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$1" | head -1
}

digest_of() { json_field "$1/summary.json" weights_digest; }

batch_digests() { grep -o '"batch_digest":"[0-9a-f]*"' "$1/metrics.jsonl"; }

# pid_of ROLE RUN_DIR: pid of "coordinator" or worker N from ranks.txt
pid_of() {
  awk -v role="$1" '$2 == role {print $4}' "$2/ranks.txt"
}

# reference: one uninterrupted run, shared by the assertions of a test.
reference() {
  run_job "$WORK/reference" "$@" >"$WORK/reference.log" 2>&1 || { cat "$WORK/reference.log"; fail "reference run failed"; }
  digest_of "$WORK/reference"
}
