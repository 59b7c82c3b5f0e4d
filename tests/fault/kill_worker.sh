# SIGKILL a worker before the first checkpoint, in the middle of a
# checkpoint write, and right after a commit: each run completes through
# the supervisor with the same final weights as an uninterrupted run.
source "$(dirname "$0")/lib.sh"
ref=$(reference)
[ -n "$ref" ] || fail "no reference digest"

kill_when() { # kill_when NAME PATH-TO-WAIT-FOR [extra options]
  local name=$1 path=$2; shift 2
  local dir=$WORK/$name
  start_job "$dir" "$WORK/$name.log" "$@"
  wait_for "$dir/ranks.txt"
  wait_for "$dir/$path"
  kill -9 "$(pid_of 1 "$dir")"
  wait_job
  [ "$JOB_STATUS" -eq 0 ] || { cat "$WORK/$name.log"; fail "$name: the supervisor did not complete the run"; }
  grep -q "worker 1 (rank 2" "$WORK/$name.log" || fail "$name: the dead worker was not named"
  grep -q '"exit_status":137' "$dir/restarts.jsonl" || fail "$name: restart not recorded"
  local got
  got=$(digest_of "$dir")
  [ "$got" = "$ref" ] || fail "$name: weights $got differ from the uninterrupted run's $ref"
  echo "$name: resumed from step $(json_field "$dir/summary.json" resumed_from_step), weights $got match"
}

# before the first checkpoint: a few steps in
kill_when before-first metrics.jsonl --set debug.ckpt_write_delay_s=0
# mid-write: the writer is slowed so the .tmp directory (of the first
# generation: the first launch) lives long enough
kill_when mid-write checkpoints/step-00000080.g1.tmp --set debug.ckpt_write_delay_s=1
# right after a commit
kill_when after-commit checkpoints/step-00000120/manifest.json
echo "kill_worker: ok"
