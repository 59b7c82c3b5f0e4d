# Stopping is an outcome, not a failure. Ctrl-C at a real terminal (a
# pseudo-terminal: its line discipline sends SIGINT to the foreground
# process group, `ringmaster run` alone since mpirun has its own): the job
# checkpoints at the next step boundary, exits 130 and says in one line how
# to resume; resumed, it ends on the uninterrupted run's weights. Ctrl-C
# twice stops at once. kill -INT and kill -TERM to the `ringmaster run`
# process do the same as Ctrl-C, with 130 and 75 (requeue). None of them
# is recorded as a failure (restarts.jsonl, events.jsonl, audit.jsonl).
source "$(dirname "$0")/lib.sh"
ref=$(reference)
job=("$RM" run "$HERE/job.yaml" --set data.dir="$DATA")

not_a_failure() { # not_a_failure DIR STATUS: the stop left no trace of a failure
  local dir=$1 status=$2
  [ ! -s "$dir/restarts.jsonl" ] || { cat "$dir/restarts.jsonl"; fail "a stop was recorded in restarts.jsonl"; }
  ! grep -q '"event":"failure"' "$dir/events.jsonl" || fail "a stop was recorded as a failure in events.jsonl"
  tail -1 "$dir/events.jsonl" | grep -q "\"event\":\"end\",\"status\":\"$status\"" ||
    { tail -3 "$dir/events.jsonl"; fail "events.jsonl does not end with status $status"; }
  grep -q "\"event\":\"run_end\",\"status\":\"$status\"" "$dir/audit.jsonl" || fail "no run_end $status in the audit trail"
  ! grep -q '"status":"failed"' "$dir/audit.jsonl" || fail "the audit trail says failed"
  "$RM" audit verify "$dir" >/dev/null || fail "the audit trail of a stopped run does not verify"
}

# Ctrl-C once, at a terminal
dir=$WORK/ctrl-c
set +e
python3 "$HERE/pty_run.py" "$WORK/ctrl-c.log" "$dir/checkpoints/step-00000080/manifest.json" 1 0 -- \
  "${job[@]}" --run-dir "$dir"
status=$?
set -e
[ "$status" -eq 130 ] || { cat "$WORK/ctrl-c.log"; fail "Ctrl-C: exit $status, expected 130"; }
grep -q "Ctrl-C: checkpointing at the next step boundary, then stopping (Ctrl-C again stops at once)" "$WORK/ctrl-c.log" ||
  { cat "$WORK/ctrl-c.log"; fail "Ctrl-C was not acknowledged"; }
line=$(grep -a "stopped on Ctrl-C (SIGINT) after checkpoint step-" "$WORK/ctrl-c.log") ||
  { cat "$WORK/ctrl-c.log"; fail "no line saying where it stopped"; }
echo "$line" | grep -q "resume with: .*ringmaster run $HERE/job.yaml --set data.dir=$DATA --run-dir $dir" ||
  fail "the line does not say how to resume: $line"
! grep -aq "job failed\|\] error:" "$WORK/ctrl-c.log" || { cat "$WORK/ctrl-c.log"; fail "Ctrl-C printed an error"; }
not_a_failure "$dir" interrupted
at=$(cat "$dir/checkpoints/latest")
[ $((10#${at#step-})) -gt 80 ] || fail "no checkpoint after the Ctrl-C (latest $at)"
[ ! -e "$dir/ringmaster.lock" ] || fail "the run lock was left behind"
run_job "$dir" >"$WORK/ctrl-c-resume.log" 2>&1 || { cat "$WORK/ctrl-c-resume.log"; fail "resume after Ctrl-C failed"; }
[ "$(json_field "$dir/summary.json" resumed_from_step)" = "$((10#${at#step-}))" ] || fail "did not resume from $at"
[ "$(digest_of "$dir")" = "$ref" ] || fail "weights after Ctrl-C and resume differ from the uninterrupted run's"
echo "Ctrl-C: exit 130 at $at, resumed to the uninterrupted weights; said: ${line#*] }"

# Ctrl-C twice: at once, without waiting for the (slowed) checkpoint
dir=$WORK/twice
set +e
python3 "$HERE/pty_run.py" "$WORK/twice.log" "$dir/checkpoints/step-00000040/manifest.json" 2 0.5 -- \
  "${job[@]}" --run-dir "$dir" --set debug.ckpt_write_delay_s=3
status=$?
set -e
[ "$status" -eq 130 ] || { cat "$WORK/twice.log"; fail "Ctrl-C twice: exit $status, expected 130"; }
grep -aq "Ctrl-C again: stopping at once" "$WORK/twice.log" || { cat "$WORK/twice.log"; fail "the second Ctrl-C was not acknowledged"; }
grep -aq "stopped on Ctrl-C (SIGINT) at once (exit 130); the latest checkpoint is step-00000040; resume with: " "$WORK/twice.log" ||
  { cat "$WORK/twice.log"; fail "no line saying it stopped at once and how to resume"; }
not_a_failure "$dir" interrupted
echo "Ctrl-C twice: exit 130 at once, step-00000040 kept"

# kill -INT and kill -TERM to ringmaster run
for sig in INT TERM; do
  dir=$WORK/kill-$sig
  start_job "$dir" "$WORK/kill-$sig.log"
  wait_for "$dir/checkpoints/step-00000040/manifest.json"
  kill -"$sig" "$JOB_PID"
  wait_job
  want=130 end=interrupted
  [ "$sig" = TERM ] && want=75 end=preempted
  [ "$JOB_STATUS" -eq "$want" ] || { cat "$WORK/kill-$sig.log"; fail "kill -$sig: exit $JOB_STATUS, expected $want"; }
  grep -q "stopped on .*SIG$sig.* after checkpoint step-.*resume with: " "$WORK/kill-$sig.log" ||
    { cat "$WORK/kill-$sig.log"; fail "kill -$sig: no line saying how to resume"; }
  not_a_failure "$dir" "$end"
  echo "kill -$sig: exit $JOB_STATUS after $(cat "$dir/checkpoints/latest")"
done
echo "stop: ok"
