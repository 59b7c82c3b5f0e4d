# Checkpoints into a tiny filesystem that fills up: the failed checkpoint
# is discarded, the previous one survives intact, the message says the disk
# is full, and training continues (checkpoint.on_error: continue) or stops
# (checkpoint.on_error: stop) as configured.
source "$(dirname "$0")/lib.sh"
mnt=$WORK/tiny
mkdir -p "$mnt"
# One checkpoint of this job is ~1.2 MB (params and two AdamW moments of
# 101,770 floats): room for the first, not for the first and the second.
mount -t tmpfs -o size=1800k tmpfs "$mnt" || { echo "SKIP: cannot mount a tmpfs here (needs root)"; exit 77; }
trap 'umount "$mnt" 2>/dev/null; rm -rf "$WORK"' EXIT

dir=$WORK/continue
run_job "$dir" --set checkpoint.dir="$mnt/ck" --set checkpoint.keep=5 >"$WORK/continue.log" 2>&1 ||
  { cat "$WORK/continue.log"; fail "training must continue after a failed checkpoint"; }
grep -q "was not written: .*No space left on device" "$WORK/continue.log" || { cat "$WORK/continue.log"; fail "no disk-full message"; }
grep -q "the latest checkpoint is still step-00000040 (intact)" "$WORK/continue.log" || fail "the message does not name the surviving checkpoint"
grep -q '"event":"checkpoint_failed"' "$dir/events.jsonl" || fail "no checkpoint_failed event"
ls "$mnt/ck" | grep -q '\.tmp$' && fail "a failed .tmp checkpoint was left behind"
"$RM" ckpt verify "$dir" | grep -q "step-00000040: ok" || fail "the surviving checkpoint does not verify"
[ -n "$(digest_of "$dir")" ] || fail "the run did not finish"
rm -rf "$mnt/ck"

dir=$WORK/stop
if run_job "$dir" --set checkpoint.dir="$mnt/ck" --set checkpoint.keep=5 --set checkpoint.on_error=stop \
  >"$WORK/stop.log" 2>&1; then
  fail "checkpoint.on_error: stop must end the run"
fi
grep -q "No space left on device" "$WORK/stop.log" || fail "no disk-full message when stopping"
grep -q "stopping: checkpoint.on_error is stop" "$WORK/stop.log" || fail "the stop is not explained"
grep -q "not restarting" "$WORK/stop.log" || fail "a configured stop must not be restarted"
"$RM" ckpt verify "$dir" | grep -q "step-00000040: ok" || fail "the surviving checkpoint does not verify after the stop"
echo "disk_full: ok"
