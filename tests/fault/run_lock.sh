# One job per run directory and per checkpoint directory, by a lease lock:
#   - two real jobs into one run directory (and a third into its
#     checkpoint.dir from another run directory): the later ones are refused
#     at once, naming the holder's host, pid and start time, and the first
#     one's record stays whole (every step once, one run_start);
#   - a lock whose holder died on this host is taken over, said so, and
#     the run resumes (killing `ringmaster run` also ends its job);
#   - a lock from a host that is gone (its lease, RINGMASTER_LOCK_LEASE_S,
#     no longer renewed) is refused until the lease expires, then taken
#     over; --break-lock takes it at once; the same Slurm job (a requeue)
#     takes over its own;
#   - a job whose lock is taken over stops.
source "$(dirname "$0")/lib.sh"
host=$(hostname)
fake=(--set launch.mpirun=true) # the lock is the supervisor's: no need to train to test it
long=(--set train.steps=100000 --set 'data.eval_split=""') # a job that cannot end while it is tested

# two jobs at once
dir=$WORK/shared
ck=$WORK/shared-ck
start_job "$dir" "$WORK/first.log" --set checkpoint.dir="$ck" --set train.steps=600
wait_for "$dir/ranks.txt"
t0=$(date +%s)
set +e
run_job "$dir" --set checkpoint.dir="$ck" --set train.steps=600 >"$WORK/second.log" 2>&1
second=$?
run_job "$WORK/other" --set checkpoint.dir="$ck" --set train.steps=600 >"$WORK/third.log" 2>&1
third=$?
set -e
[ "$second" -eq 3 ] || { cat "$WORK/second.log"; fail "a second job in the same run directory exited $second, not 3"; }
grep -q "the run directory $dir is in use by another job: host $host, pid $JOB_PID, started 20[0-9-]*T" "$WORK/second.log" ||
  { cat "$WORK/second.log"; fail "the refusal does not name the holder"; }
[ "$third" -eq 3 ] || { cat "$WORK/third.log"; fail "a job sharing checkpoint.dir exited $third, not 3"; }
grep -q "the checkpoint directory $ck is in use by another job: host $host, pid $JOB_PID" "$WORK/third.log" ||
  { cat "$WORK/third.log"; fail "the checkpoint directory refusal does not name the holder"; }
[ $(($(date +%s) - t0)) -le 5 ] || fail "the refusals were not at once"
kill -0 "$JOB_PID" 2>/dev/null || fail "the first job ended before the others were refused: the test proves nothing"
wait_job
[ "$JOB_STATUS" -eq 0 ] || { cat "$WORK/first.log"; fail "the first job failed ($JOB_STATUS)"; }
[ "$(wc -l <"$dir/metrics.jsonl")" = 600 ] || fail "metrics.jsonl holds $(wc -l <"$dir/metrics.jsonl") lines for 600 steps"
[ -z "$(grep -o '"step":[0-9]*' "$dir/metrics.jsonl" | sort | uniq -d)" ] || fail "steps logged twice"
[ "$(grep -c '"event":"run_start"' "$dir/audit.jsonl")" = 1 ] || fail "more than one run_start in the audit trail"
"$RM" audit verify "$dir" >/dev/null || fail "the audit trail does not verify"
[ ! -e "$dir/ringmaster.lock" ] && [ ! -e "$ck/ringmaster.lock" ] || fail "a lock was left behind"
echo "two jobs: $(grep -o 'the run directory .* is in use.*' "$WORK/second.log" | cut -c1-160)"

# a holder that died on this host
dir=$WORK/dead
start_job "$dir" "$WORK/dead.log" "${long[@]}"
wait_for "$dir/checkpoints/step-00000080/manifest.json"
coordinator=$(pid_of coordinator "$dir")
kill -9 "$JOB_PID"
wait_job
for _ in $(seq 1 100); do kill -0 "$coordinator" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$coordinator" 2>/dev/null || fail "the job outlived its ringmaster run"
[ -e "$dir/ringmaster.lock" ] || fail "the dead job's lock is not there"
run_job "$dir" "${long[@]}" --set train.steps=200 >"$WORK/dead2.log" 2>&1 && fail "resumed another job's checkpoint"
grep -q "took over the stale lock of the run directory $dir: its holder, pid $JOB_PID on this host, is gone" "$WORK/dead2.log" ||
  { cat "$WORK/dead2.log"; fail "the takeover of a dead holder's lock was not said"; }
run_job "$dir" "${long[@]}" "${fake[@]}" >"$WORK/dead3.log" 2>&1 || { cat "$WORK/dead3.log"; fail "the run after a dead holder failed"; }
echo "dead holder: $(grep -o 'took over.*' "$WORK/dead2.log" | cut -c1-160)"

# a host that is gone: its lease expires
dir=$WORK/lease
export RINGMASTER_LOCK_LEASE_S=3
start_job "$dir" "$WORK/lease.log" "${long[@]}"
unset RINGMASTER_LOCK_LEASE_S
wait_for "$dir/ranks.txt"
coordinator=$(pid_of coordinator "$dir")
kill -9 "$JOB_PID"
wait_job
for _ in $(seq 1 100); do kill -0 "$coordinator" 2>/dev/null || break; sleep 0.1; done
grep -q '^lease_s 3$' "$dir/ringmaster.lock" || { cat "$dir/ringmaster.lock"; fail "the lease is not the one asked for"; }
# as if it had been taken on a host that died, just now
sed -i -e 's/^host .*/host node-gone/' -e 's/^slurm_job_id .*/slurm_job_id 4242/' "$dir/ringmaster.lock"
cp "$dir/ringmaster.lock" "$WORK/lock.saved"
renew() { sed -e "s/^refreshed .*/refreshed $(printf '%014d' "$(date +%s)")/" "$WORK/lock.saved" >"$dir/ringmaster.lock"; }
renew
if run_job "$dir" "${long[@]}" "${fake[@]}" >"$WORK/lease1.log" 2>&1; then fail "took a lock whose lease is still valid"; fi
grep -q "is in use by another job: host node-gone, pid [0-9]*, started .*lease 3 s, Slurm job 4242" "$WORK/lease1.log" ||
  { cat "$WORK/lease1.log"; fail "the refusal does not name the holder"; }
sleep 4.5
run_job "$dir" "${long[@]}" "${fake[@]}" >"$WORK/lease2.log" 2>&1 || { cat "$WORK/lease2.log"; fail "the expired lease was not taken over"; }
grep -q "took over the stale lock of the run directory $dir: its lease expired [0-9]* s ago (host node-gone" "$WORK/lease2.log" ||
  { cat "$WORK/lease2.log"; fail "the takeover of an expired lease was not said"; }
echo "expired lease: $(grep -o 'took over.*' "$WORK/lease2.log" | cut -c1-160)"

# --break-lock, and a requeue of the same Slurm job
renew
if run_job "$dir" "${long[@]}" "${fake[@]}" >"$WORK/break1.log" 2>&1; then fail "took a live lock"; fi
run_job "$dir" "${long[@]}" "${fake[@]}" --break-lock >"$WORK/break2.log" 2>&1 || { cat "$WORK/break2.log"; fail "--break-lock failed"; }
grep -q "took over the stale lock of the run directory $dir: --break-lock given" "$WORK/break2.log" ||
  { cat "$WORK/break2.log"; fail "--break-lock did not say what it took over"; }
renew
if (export SLURM_JOB_ID=999 SLURM_NTASKS=3 && run_job "$dir" "${long[@]}" "${fake[@]}") >"$WORK/slurm1.log" 2>&1; then
  fail "another Slurm job took the lock"
fi
(export SLURM_JOB_ID=4242 SLURM_NTASKS=3 && run_job "$dir" "${long[@]}" "${fake[@]}") >"$WORK/slurm2.log" 2>&1 ||
  { cat "$WORK/slurm2.log"; fail "the requeued Slurm job did not take over its own lock"; }
grep -q "it belongs to this Slurm job (4242), requeued" "$WORK/slurm2.log" || { cat "$WORK/slurm2.log"; fail "the requeue takeover was not said"; }
echo "break-lock and Slurm requeue: taken over"

# a job whose lock is broken stops
dir=$WORK/broken
start_job "$dir" "$WORK/broken.log" "${long[@]}"
wait_for "$dir/ranks.txt"
run_job "$dir" "${long[@]}" "${fake[@]}" --break-lock >"$WORK/breaker.log" 2>&1 ||
  { cat "$WORK/breaker.log"; fail "--break-lock of a live job failed"; }
for _ in $(seq 1 100); do kill -0 "$JOB_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$JOB_PID" 2>/dev/null && fail "the job whose lock was broken still runs 10 s later"
wait_job
[ "$JOB_STATUS" -ne 0 ] || fail "the job whose lock was broken exited 0"
grep -q "took over the lock\|took over the run directory" "$WORK/broken.log" || { cat "$WORK/broken.log"; fail "the broken job did not say why it stopped"; }
echo "broken lock: the holder stopped ($JOB_STATUS): $(grep -o 'another job took over[^:]*' "$WORK/broken.log" | head -1)"
echo "run_lock: ok"
