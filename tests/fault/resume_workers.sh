# Resume 2 workers -> 3 workers: the global sample sequence continues
# exactly (every step's batch fingerprint equals the uninterrupted run's,
# which itself is the same on 2 and 3 workers), and accuracy holds.
source "$(dirname "$0")/lib.sh"
run_job "$WORK/ref2" >/dev/null 2>&1 || fail "reference run (2 workers) failed"
run_job "$WORK/ref3" --workers 3 >/dev/null 2>&1 || fail "reference run (3 workers) failed"
diff <(batch_digests "$WORK/ref2") <(batch_digests "$WORK/ref3") >/dev/null || fail "2 and 3 workers see different batches"
[ "$(batch_digests "$WORK/ref2" | wc -l)" -eq 240 ] || fail "expected 240 steps of batch fingerprints"

dir=$WORK/moved
start_job "$dir" "$WORK/moved.log"
wait_for "$dir/checkpoints/step-00000120/manifest.json"
kill -USR1 "$JOB_PID"
wait_job
[ "$JOB_STATUS" -eq 75 ] || fail "the stopped run must exit 75"
run_job "$dir" --workers 3 >"$WORK/resume.log" 2>&1 || { cat "$WORK/resume.log"; fail "resume on 3 workers failed"; }
[ "$(json_field "$dir/summary.json" workers)" = 3 ] || fail "the resumed run did not use 3 workers"
from=$(json_field "$dir/summary.json" resumed_from_step)
[ "$from" -ge 120 ] || fail "resumed from step $from"
diff <(batch_digests "$WORK/ref2") <(batch_digests "$dir") || fail "the sample sequence changed when resuming on 3 workers"
acc_ref=$(json_field "$WORK/ref2/summary.json" test_accuracy)
acc=$(json_field "$dir/summary.json" test_accuracy)
awk -v a="$acc" -v b="$acc_ref" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.01) }' || fail "accuracy $acc vs $acc_ref"
echo "resume_workers: ok (2 -> 3 workers at step $from; 240 batches identical; accuracy $acc vs $acc_ref)"
