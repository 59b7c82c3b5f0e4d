# SIGSTOP a worker: the coordinator names it (rank, host, step) within the
# hang timeout, the supervisor restarts the job, and it completes with the
# uninterrupted run's weights.
source "$(dirname "$0")/lib.sh"
ref=$(reference)
dir=$WORK/hung
start_job "$dir" "$WORK/hung.log" --set fault.hang_timeout_s=3
wait_for "$dir/checkpoints/step-00000080/manifest.json"
victim=$(pid_of 1 "$dir")
kill -STOP "$victim"
stopped_at=$(date +%s.%N)
# the hang message must appear within the timeout plus a little
for i in $(seq 1 200); do
  grep -q "hang: worker 1 (rank 2" "$WORK/hung.log" && break
  sleep 0.05
done
named_at=$(date +%s.%N)
grep -q "hang: worker 1 (rank 2, host $(hostname)" "$WORK/hung.log" || { cat "$WORK/hung.log"; fail "the stopped worker was not named"; }
awk -v a="$stopped_at" -v b="$named_at" 'BEGIN { exit !(b - a < 8) }' || fail "named only after $(awk -v a="$stopped_at" -v b="$named_at" 'BEGIN{print b-a}') s"
grep -q "; workers 0 are alive and wait for it" "$WORK/hung.log" || fail "the waiting worker was not told apart from the stopped one"
kill -CONT "$victim" 2>/dev/null || true
wait_job
[ "$JOB_STATUS" -eq 0 ] || { cat "$WORK/hung.log"; fail "the job did not complete after the hang"; }
grep -q '"event":"hang"' "$dir/events.jsonl" || fail "the hang is not in events.jsonl"
[ "$(digest_of "$dir")" = "$ref" ] || fail "weights differ after the hang and restart"
echo "hang: ok ($(grep -o 'hang: worker 1[^;]*' "$WORK/hung.log" | head -1))"
