# fault.nan_policy for a non-finite gradient at step 100 (debug.nan_at_step
# poisons it): skip leaves the weights alone that step and goes on; stop
# ends the run for good; rollback restarts from the last checkpoint with
# that step skipped, and ends with the same weights as skip.
source "$(dirname "$0")/lib.sh"
nan="--set debug.nan_at_step=99"

run_job "$WORK/skip" $nan --set fault.nan_policy=skip >"$WORK/skip.log" 2>&1 || { cat "$WORK/skip.log"; fail "skip: run failed"; }
grep -q '"step":100,.*"update_skipped":true' "$WORK/skip/metrics.jsonl" || fail "skip: step 100 not marked update_skipped"
grep -q "step 100: non-finite loss or gradient; update skipped" "$WORK/skip.log" || fail "skip: no message"
skip_digest=$(digest_of "$WORK/skip")

set +e
run_job "$WORK/stop" $nan --set fault.nan_policy=stop >"$WORK/stop.log" 2>&1
status=$?
set -e
[ "$status" -eq 3 ] || { cat "$WORK/stop.log"; fail "stop: exit status $status, expected 3"; }
grep -q "non-finite loss or gradient (fault.nan_policy: stop)" "$WORK/stop.log" || fail "stop: no message"
[ -f "$WORK/stop/summary.json" ] && fail "stop: the run must not complete"

run_job "$WORK/rollback" $nan --set fault.nan_policy=rollback >"$WORK/rollback.log" 2>&1 ||
  { cat "$WORK/rollback.log"; fail "rollback: run failed"; }
grep -qx 99 "$WORK/rollback/skip_steps.txt" || fail "rollback: step not recorded in skip_steps.txt"
# from the last checkpoint committed before the abort (80, or 40 if step 80's
# write was still in flight)
from=$(json_field "$WORK/rollback/summary.json" resumed_from_step)
[ "$from" = 80 ] || [ "$from" = 40 ] || fail "rollback: restarted from step $from, not from a checkpoint before step 100"
[ "$(digest_of "$WORK/rollback")" = "$skip_digest" ] || fail "rollback: weights differ from skipping the same step"
echo "nan_policy: ok"
