# SIGKILL one worker in the middle of a long run: with restarts turned off
# (fault.max_restarts: 0), `ringmaster run` ends within a bounded time,
# exits non-zero and names the worker that died, and no process of the job
# is left behind.
source "$(dirname "$0")/lib.sh"
write_job job.yaml
"$RINGMASTER" run job.yaml --run-dir "$WORK/run" --set train.steps=1000000 --set 'data.eval_split=""' \
  >out.txt 2>&1 &
job=$!
# only this job's processes are ever signalled: on the way out, whatever is
# left of the tree under $job
descendants() {
  local pid
  for pid in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$pid"
    descendants "$pid"
  done
}
job_running=1
cleanup() {
  # once ringmaster has been waited for, its pid may belong to someone else
  [ "$job_running" = 1 ] || return 0
  local pids
  pids="$(descendants "$job") $job"
  kill -9 $pids 2>/dev/null || true
}
trap 'status=$?; cleanup; if [ $status -eq 0 ]; then rm -rf "$WORK"; else echo "(scratch kept in $WORK)"; fi' EXIT

# wait until the job trains: 20 steps in metrics.jsonl
for ((i = 0; i < 600; i++)); do
  kill -0 "$job" 2>/dev/null || { cat out.txt; fail "the job ended before it was killed"; }
  [ -f run/metrics.jsonl ] && [ "$(wc -l <run/metrics.jsonl)" -ge 20 ] && break
  sleep 0.1
done
[ "$(wc -l <run/metrics.jsonl)" -ge 20 ] || fail "the job did not train 20 steps within 60 s"

# worker 1 is rank 2; ranks.txt says which pid that is. Check that the pid
# is a ringmaster-worker of this job before killing it.
victim=$(awk '$1 == 2 && $2 == 1 {print $4}' run/ranks.txt)
[ -n "$victim" ] || { cat run/ranks.txt; fail "ranks.txt does not name worker 1"; }
descendants "$job" | grep -qx "$victim" || fail "pid $victim from ranks.txt is not part of this job"
[ "$(ps -o comm= -p "$victim")" = "ringmaster-work" ] || fail "pid $victim is not a ringmaster-worker"
before=$(descendants "$job")
kill -9 "$victim"
killed_at=$(date +%s)

status=
for ((i = 0; i < 300; i++)); do
  if ! kill -0 "$job" 2>/dev/null; then
    wait "$job" && status=0 || status=$?
    job_running=0
    break
  fi
  sleep 0.1
done
[ -n "$status" ] || { cat out.txt; fail "ringmaster still runs 30 s after the worker was killed"; }
echo "ringmaster exited with status $status $(($(date +%s) - killed_at)) s after the kill"
[ "$status" -ne 0 ] || fail "ringmaster exited 0 after a worker was killed"
expect_in out.txt "job failed: worker 1 (rank 2, pid $victim"
grep -F "job failed:" out.txt
# nothing of the job survives it (a survivor is ended here, by its pid,
# after checking it is still one of ours)
leaked=
for pid in $before; do
  case "$(ps -o stat=,comm= -p "$pid" 2>/dev/null)" in
  Z*) ;;
  *ringmaster-* | *mpirun*)
    leaked="$leaked $pid($(ps -o comm= -p "$pid"))"
    kill -9 "$pid" 2>/dev/null || true
    ;;
  esac
done
[ -z "$leaked" ] || fail "processes outlived the job:$leaked"
[ ! -e run/summary.json ] || fail "a killed run wrote summary.json"
