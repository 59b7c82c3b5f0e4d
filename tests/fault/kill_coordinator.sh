# SIGKILL the coordinator mid-run: the supervisor restarts the job from the
# latest checkpoint and the final weights equal the uninterrupted run's.
source "$(dirname "$0")/lib.sh"
ref=$(reference)
dir=$WORK/killed
start_job "$dir" "$WORK/killed.log"
wait_for "$dir/checkpoints/step-00000080/manifest.json"
kill -9 "$(pid_of coordinator "$dir")"
wait_job
[ "$JOB_STATUS" -eq 0 ] || { cat "$WORK/killed.log"; fail "the supervisor did not complete the run"; }
grep -q "the coordinator (rank 0" "$WORK/killed.log" || fail "the dead coordinator was not named"
[ "$(digest_of "$dir")" = "$ref" ] || fail "weights differ after the coordinator was killed"
echo "kill_coordinator: ok (resumed from step $(json_field "$dir/summary.json" resumed_from_step))"
