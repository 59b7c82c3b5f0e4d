# A job cut off in the middle of a commit comes back after a newer job took
# the run over: job A (generation 1) holds step 80's commit back
# (debug.ckpt_commit_delay_s) and is frozen there, `ringmaster run`, mpirun
# and every rank (SIGSTOP: a host that hangs). Its lease
# (RINGMASTER_LOCK_LEASE_S) expires, job B, the same command, takes the run
# over as generation 2 and resumes from step 40. A is let go while B
# trains: its commit of step 80 is refused naming both generations, it
# stops having changed nothing, and B trains to the end with the weights of
# a run never interrupted; every checkpoint past step 40 is B's.
source "$(dirname "$0")/lib.sh"
ref=$(reference)
dir=$WORK/fenced
ck=$dir/checkpoints
export RINGMASTER_LOCK_LEASE_S=3
start_job "$dir" "$WORK/a.log" --set debug.ckpt_commit_delay_s=3 --set fault.max_restarts=0
a_pid=$JOB_PID
wait_for "$ck/step-00000080.g1.tmp/manifest.json" 120
stopped=("$a_pid")
kill -STOP "$a_pid"
for p in $(pgrep -P "$a_pid") $(pid_of coordinator "$dir") $(awk '$2 == "worker" {print $4}' "$dir/ranks.txt"); do
  kill -STOP "$p" && stopped+=("$p")
done
trap 'status=$?; if [ $status -ne 0 ]; then kill -CONT "${stopped[@]}"; kill -9 "${stopped[@]}"; echo "(scratch kept in $WORK)"; else rm -rf "$WORK"; fi 2>/dev/null' EXIT
[ "$(cat "$ck/latest")" = step-00000040 ] || fail "A committed $(cat "$ck/latest") before it was frozen: nothing to fence"
[ "$(cat "$ck/generation")" = 1 ] || fail "A is generation $(cat "$ck/generation"), not 1"
sleep 4 # A's lease expires
start_job "$dir" "$WORK/b.log"
b_pid=$JOB_PID
wait_for "$ck/step-00000080/manifest.json" 120
grep -q '"generation": 2' "$ck/step-00000080/manifest.json" || fail "step 80 is not generation 2's"
# A comes back: its ranks first, its ringmaster run (which would notice its
# lock was taken and end them) a second later
kill -CONT "${stopped[@]:1}"
sleep 1
kill -CONT "$a_pid"
set +e
wait "$a_pid"
a_status=$?
set -e
JOB_PID=$b_pid
wait_job
[ "$JOB_STATUS" -eq 0 ] || { cat "$WORK/b.log"; fail "job B failed ($JOB_STATUS)"; }
[ "$a_status" -ne 0 ] || fail "the stale job A completed"
grep -q "step-00000080 refused: this job is generation 1 of $ck, but generation 2 has started there since.*nothing was changed" "$WORK/a.log" ||
  { cat "$WORK/a.log"; fail "A's commit was not refused by the fence"; }
"$RM" ckpt list "$dir" >"$WORK/list.log"
awk '$1 ~ /^step-/ && $2 > 40 && $5 != 2 {bad = 1} END {exit bad}' "$WORK/list.log" ||
  { cat "$WORK/list.log"; fail "a checkpoint past step 40 is not generation 2's"; }
grep -q "step-00000240 .*(latest)" "$WORK/list.log" || { cat "$WORK/list.log"; fail "latest is not B's final checkpoint"; }
[ "$(digest_of "$dir")" = "$ref" ] || fail "weights differ from the uninterrupted run"
echo "fence: ok ($(grep -o 'step-00000080 refused: this job is generation 1.*generation 2 has started' "$WORK/a.log" | head -1 | sed "s|$ck|CKPT|"))"
