# Launching by hand with mpirun, one worker started with another --set:
# the job stops before training, exits non-zero, and says which worker rank
# runs a different config. The same launch with matching configs trains.
source "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpirun}
write_job job.yaml
# run_dir in the file: every rank then resolves the same config
printf 'run_dir: %s\n' "$WORK/run" >>job.yaml
sed -i 's/^  epochs: 1/  steps: 30/' job.yaml

status=0
timeout -k 5 60 "$MPIRUN" --allow-run-as-root --oversubscribe \
  -np 1 "$BIN/ringmaster-coordinator" job.yaml : \
  -np 1 "$BIN/ringmaster-worker" job.yaml : \
  -np 1 "$BIN/ringmaster-worker" job.yaml --set train.lr=0.5 >mismatch.txt 2>&1 || status=$?
[ "$status" -ne 124 ] && [ "$status" -ne 137 ] || { cat mismatch.txt; fail "the mismatched launch hung"; }
[ "$status" -ne 0 ] || { cat mismatch.txt; fail "a launch with a mismatched worker exited 0"; }
expect_in mismatch.txt "worker 1 (rank 2"
expect_in mismatch.txt "runs a different job config"
grep -F "runs a different job config" mismatch.txt
! grep -q "worker 0 (rank 1" mismatch.txt || fail "worker 0 runs the coordinator's config but was blamed"
[ ! -s run/metrics.jsonl ] || fail "the mismatched job trained"

rm -rf run
status=0
timeout -k 5 120 "$MPIRUN" --allow-run-as-root --oversubscribe \
  -np 1 "$BIN/ringmaster-coordinator" job.yaml : \
  -np 2 "$BIN/ringmaster-worker" job.yaml >match.txt 2>&1 || status=$?
[ "$status" -eq 0 ] || { cat match.txt; fail "the matching hand launch exited with status $status"; }
expect_in match.txt "done: 30 steps on 2 workers"
[ "$(wc -l <run/metrics.jsonl)" -eq 30 ] || fail "the matching hand launch did not log 30 steps"

# One worker cannot set up (its dataset is missing) while the other would
# go on to a backend that starts with collectives (auto): the healthy
# worker must not wait in them; the job stops at once naming worker 1.
rm -rf run
status=0
timeout -k 5 60 "$MPIRUN" --allow-run-as-root --oversubscribe \
  -np 1 "$BIN/ringmaster-coordinator" job.yaml --set launch.backend=auto : \
  -np 1 "$BIN/ringmaster-worker" job.yaml --set launch.backend=auto : \
  -np 1 "$BIN/ringmaster-worker" job.yaml --set launch.backend=auto --set data.dir="$WORK/no-such-data" \
  >setup_fail.txt 2>&1 || status=$?
[ "$status" -ne 124 ] && [ "$status" -ne 137 ] || { cat setup_fail.txt; fail "a worker failing its setup hung the job"; }
[ "$status" -ne 0 ] || { cat setup_fail.txt; fail "a launch with a worker that cannot set up exited 0"; }
expect_in setup_fail.txt "worker 1 (rank 2"
expect_in setup_fail.txt "no-such-data"
! grep -q "worker 0 (rank 1" setup_fail.txt || { cat setup_fail.txt; fail "worker 0 stopped for worker 1 but was blamed"; }
