# Damage the newest checkpoint three ways (a flipped byte, a truncated file,
# a deleted manifest): resume skips it with a message that names it and
# why, uses the previous one, and still ends with the uninterrupted run's
# weights.
source "$(dirname "$0")/lib.sh"
ref=$(reference)

# A run stopped by a signal after its checkpoint at step 160 (and older ones).
base=$WORK/base
start_job "$base" "$WORK/base.log"
wait_for "$base/checkpoints/step-00000160/manifest.json"
kill -USR1 "$JOB_PID"
wait_job
[ "$JOB_STATUS" -eq 75 ] || { cat "$WORK/base.log"; fail "a stopped run must exit 75 (requeue), got $JOB_STATUS"; }
newest=$(cat "$base/checkpoints/latest")
newest_step=$((10#${newest#step-}))
echo "stopped with checkpoints: $(ls "$base/checkpoints" | tr '\n' ' ')"

damage() { # damage NAME COMMAND...: copy the run, damage its newest checkpoint, resume
  local name=$1; shift
  local dir=$WORK/$name
  cp -a "$base" "$dir"
  (cd "$dir/checkpoints/$newest" && "$@")
  run_job "$dir" --set fault.max_restarts=0 >"$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; fail "$name: resume failed"; }
  grep -q "skipping checkpoint $dir/checkpoints/$newest" "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: the damaged checkpoint was not named"; }
  local from
  from=$(json_field "$dir/summary.json" resumed_from_step)
  [ "$from" -lt "$newest_step" ] || fail "$name: resumed from $from, not from an older checkpoint"
  [ "$(digest_of "$dir")" = "$ref" ] || fail "$name: weights differ from the uninterrupted run"
  echo "$name: $(grep -o "skipping checkpoint.*" "$WORK/$name.log" | head -1); resumed from $from"
}

flip() { # invert one byte in the middle of worker 1's payload
  python3 - worker-00001.rmc <<'PY'
import os, sys
path = sys.argv[1]
at = os.path.getsize(path) // 2
with open(path, "r+b") as f:
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 0xFF]))
PY
}
damage flipped flip
grep -q "checksum mismatch" "$WORK/flipped.log" || fail "a flipped byte must be reported as a checksum mismatch"
damage truncated truncate -s -100 worker-00000.rmc
grep -q "truncated" "$WORK/truncated.log" || fail "a truncated file must be reported as truncated"
damage no-manifest rm manifest.json
grep -q "manifest.json: cannot open" "$WORK/no-manifest.log" || fail "a missing manifest must be reported"

# ckpt verify names the damage too, and exits non-zero
dir=$WORK/verify
cp -a "$base" "$dir"
(cd "$dir/checkpoints/$newest" && flip)
if "$RM" ckpt verify "$dir" >"$WORK/verify.log" 2>&1; then fail "ckpt verify passed a damaged checkpoint"; fi
grep -q "$newest: FAILED" "$WORK/verify.log" || fail "ckpt verify did not name $newest"
echo "corrupt: ok"
