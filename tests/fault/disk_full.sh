# Nothing written is silently lost, on a full disk (tiny tmpfs mounts):
#   - checkpoints into a filesystem with room for one: the failed one is
#     discarded, the previous one survives intact, the message says the
#     disk is full, and (checkpoint.on_error: stop, the default) the job
#     stops with exit 74 and is not restarted; with on_error: continue it
#     trains on, but the final checkpoint (the model) cannot be written, so
#     it stops with 74 too;
#   - a run directory that fills up: the job stops with 74 naming the log
#     that could not be written, every line of metrics.jsonl is whole, no
#     restart is tried, the supervisor says where the model stands; with
#     room again, the same command resumes and ends on the weights of a run
#     that was never interrupted.
source "$(dirname "$0")/lib.sh"
ref=$(reference)
mnt=$WORK/tiny
mkdir -p "$mnt"
# One checkpoint of this job is ~1.2 MB (params and two AdamW moments of
# 101,770 floats): room for the first, not for the first and the second.
mount -t tmpfs -o size=1800k tmpfs "$mnt" || { echo "SKIP: cannot mount a tmpfs here (needs root)"; exit 77; }
runs=$WORK/tiny-runs
mkdir -p "$runs"
trap 'umount "$mnt" 2>/dev/null; umount "$runs" 2>/dev/null; rm -rf "$WORK"' EXIT

expect_status() { # expect_status WANT LOG NAME
  [ "$JOB_STATUS" -eq "$1" ] || { cat "$2"; fail "$3: exit $JOB_STATUS, expected $1"; }
}
run_bg() { # run_bg NAME DIR [options]: runs the job to its end; sets JOB_STATUS
  local name=$1 dir=$2; shift 2
  start_job "$dir" "$WORK/$name.log" "$@"
  wait_job
}

run_bg stop "$WORK/stop" --set checkpoint.dir="$mnt/ck" --set checkpoint.keep=5
expect_status 74 "$WORK/stop.log" "on_error stop (the default)"
grep -q "was not written: .*No space left on device" "$WORK/stop.log" || { cat "$WORK/stop.log"; fail "no disk-full message"; }
grep -q "the latest checkpoint is still step-00000040 (intact)" "$WORK/stop.log" || fail "the message does not name the surviving checkpoint"
grep -q "stopping: checkpoint.on_error is stop" "$WORK/stop.log" || fail "the stop is not explained"
grep -q "not restarting: writing to the run or checkpoint directory failed" "$WORK/stop.log" || fail "a full disk must not be restarted"
! grep -q "restart 1 of" "$WORK/stop.log" || fail "restarted on a full disk"
grep -q '"event":"checkpoint_failed"' "$WORK/stop/events.jsonl" || fail "no checkpoint_failed event"
ls "$mnt/ck" | grep -q '\.tmp$' && fail "a failed .tmp checkpoint was left behind"
"$RM" ckpt verify "$WORK/stop" | grep -q "step-00000040: ok" || fail "the surviving checkpoint does not verify"
rm -rf "$mnt/ck"

run_bg continue "$WORK/continue" --set checkpoint.dir="$mnt/ck" --set checkpoint.keep=5 --set checkpoint.on_error=continue
expect_status 74 "$WORK/continue.log" "on_error continue"
[ "$(wc -l <"$WORK/continue/metrics.jsonl")" = 240 ] || fail "on_error continue did not train on"
grep -q "the final checkpoint (the run's model) failed" "$WORK/continue.log" || { cat "$WORK/continue.log"; fail "no word on the lost model"; }
"$RM" ckpt verify "$WORK/continue" | grep -q "step-00000040: ok" || fail "the surviving checkpoint does not verify"
[ ! -e "$WORK/continue/summary.json" ] || fail "a run without its final model wrote summary.json"
rm -rf "$mnt/ck"
echo "checkpoints on a full disk: exit 74, step-00000040 intact (on_error stop and continue)"

# the run directory fills up (checkpoints elsewhere)
mount -t tmpfs -o size=128k tmpfs "$runs"
dir=$runs/run
run_bg logs "$dir" --set checkpoint.dir="$WORK/ck"
expect_status 74 "$WORK/logs.log" "a full run directory"
grep -q "$dir/[a-z]*\.jsonl: write failed: No space left on device; stopping the job (every committed checkpoint is intact; the latest is step-" "$WORK/logs.log" ||
  { cat "$WORK/logs.log"; fail "the full run directory is not named"; }
grep -q "not restarting: writing to the run or checkpoint directory failed" "$WORK/logs.log" || fail "a full run directory must not be restarted"
python3 - "$dir" <<'PY' || fail "a log was left with a half line"
import json, os, sys
for name in ("metrics.jsonl", "eval.jsonl", "events.jsonl", "restarts.jsonl"):
    path = os.path.join(sys.argv[1], name)
    if os.path.exists(path):
        data = open(path, "rb").read()
        assert not data or data.endswith(b"\n"), f"{name} ends in a half line"
        for line in data.splitlines():
            json.loads(line)
PY
steps=$(wc -l <"$dir/metrics.jsonl")
"$RM" audit verify "$dir" >/dev/null || fail "the audit trail does not verify after the disk filled"
mount -o remount,size=8m "$runs"
run_job "$dir" --set checkpoint.dir="$WORK/ck" >"$WORK/logs2.log" 2>&1 || { cat "$WORK/logs2.log"; fail "resume after freeing space failed"; }
[ "$(digest_of "$dir")" = "$ref" ] || fail "weights after the full run directory and resume differ from the uninterrupted run's"
echo "full run directory: exit 74 after $steps whole lines; resumed from step $(json_field "$dir/summary.json" resumed_from_step) to the uninterrupted weights"
echo "disk_full: ok"
