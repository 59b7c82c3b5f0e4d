# Encryption at rest, end to end: a key from `ringmaster keygen`, shards
# sealed by import-idx --encrypt, checkpoints sealed by security.key_file.
# A run on encrypted data stopped at a checkpoint resumes with the right
# key to the very weights of an uninterrupted plain run; a run without a
# key or with another key is refused, naming what it cannot read.
source "$(dirname "$0")/lib.sh"
key=$WORK/key
"$RM" keygen "$key" >/dev/null
[ "$(stat -c %a "$key")" = 600 ] || fail "keygen made mode $(stat -c %a "$key")"
[ "$(stat -c %s "$key")" = 32 ] || fail "a key is 32 bytes"
if "$RM" keygen "$key" >"$WORK/keygen2.log" 2>&1; then fail "keygen replaced an existing key"; fi
expect_in "$WORK/keygen2.log" "already exists" "keygen over a key"

enc=$WORK/data
import_encrypted "$key" "$enc"
grep -qx "encryption xchacha20poly1305" "$enc/train/index.rmi" || fail "the index does not say the split is encrypted"
[ "$(protection "$enc/train/shard-00000.rms")" = 1 ] || fail "shard header protection is not 1 (sealed)"
# the sealed payload shares nothing with the plain one past the header
cmp -s <(tail -c +200 "$DATA/train/shard-00000.rms" | head -c 100000) \
       <(tail -c +200 "$enc/train/shard-00000.rms" | head -c 100000) && fail "the shard payload is not encrypted"

# no key: refused before anything starts
if "$RM" run "$HERE/job.yaml" --set data.dir="$enc" --run-dir "$WORK/nokey" >"$WORK/nokey.log" 2>&1; then
  fail "a run on encrypted data without a key started"
fi
expect_in "$WORK/nokey.log" "is encrypted (its index says so) and no key is set" "no key"

ref=$(reference)

dir=$WORK/enc-run
"$RM" run "$HERE/job.yaml" --set data.dir="$enc" --set security.key_file="$key" --run-dir "$dir" \
  >"$WORK/enc1.log" 2>&1 &
JOB_PID=$!
wait_for "$dir/checkpoints/step-00000120/manifest.json"
kill -USR1 "$JOB_PID"
wait_job
[ "$JOB_STATUS" -eq 75 ] || { cat "$WORK/enc1.log"; fail "the stopped encrypted run must exit 75, got $JOB_STATUS"; }
ck=$(ls -d "$dir"/checkpoints/step-* | tail -1)
[ "$(protection "$ck/worker-00000.rmc")" = 1 ] || fail "checkpoint file $ck/worker-00000.rmc is not sealed"
"$RM" ckpt verify "$dir" >"$WORK/verify.log" 2>&1 || { cat "$WORK/verify.log"; fail "ckpt verify failed"; }
expect_in "$WORK/verify.log" "(encrypted)" "ckpt verify"
expect_in "$WORK/verify.log" "dataset_index_hash" "ckpt verify"

# another key: refused by name, before launching, and the checkpoints are left alone
other=$WORK/other-key
"$RM" keygen "$other" >/dev/null
if "$RM" run "$HERE/job.yaml" --set data.dir="$enc" --set security.key_file="$other" --run-dir "$dir" \
  >"$WORK/wrong.log" 2>&1; then fail "a run with the wrong key succeeded"; fi
# refused before anything runs, by the checkpoint it would resume (the
# shards, sealed with the same key, would be refused next)
expect_in "$WORK/wrong.log" "checkpoints/step-[0-9]*: is encrypted with another key than security.key_file" \
  "wrong key on the checkpoint"
! grep -q "mpirun" "$WORK/wrong.log" || fail "the wrong key was noticed only after launching"
# with no checkpoint to look at, the workers name the shard
if "$RM" run "$HERE/job.yaml" --set data.dir="$enc" --set security.key_file="$other" --run-dir "$WORK/wrong-fresh" \
  >"$WORK/wrong-fresh.log" 2>&1; then fail "a fresh run with the wrong key succeeded"; fi
expect_in "$WORK/wrong-fresh.log" "shard-0000[0-9].rms: was encrypted with another key" "wrong key on shards"
[ -d "$ck" ] || fail "the wrong-key run removed $ck"

# plain data, sealed checkpoints, wrong key: the checkpoint is named, and
# the run does not quietly start over from step 0
pdir=$WORK/plain-data-sealed-ckpt
run_job "$pdir" --set security.key_file="$key" --set train.steps=80 >"$WORK/p1.log" 2>&1 || { cat "$WORK/p1.log"; fail "run with sealed checkpoints failed"; }
rm "$pdir/summary.json"
if run_job "$pdir" --set security.key_file="$other" --set train.steps=120 >"$WORK/p2.log" 2>&1; then
  fail "resume with the wrong key succeeded"
fi
expect_in "$WORK/p2.log" "step-00000080: is encrypted with another key" "wrong key on a checkpoint"

# the right key resumes, to the same weights as the uninterrupted plain run
"$RM" run "$HERE/job.yaml" --set data.dir="$enc" --set security.key_file="$key" --run-dir "$dir" \
  >"$WORK/enc2.log" 2>&1 || { cat "$WORK/enc2.log"; fail "resume with the right key failed"; }
from=$(json_field "$dir/summary.json" resumed_from_step)
[ "$from" -ge 120 ] || fail "resumed from step $from"
got=$(digest_of "$dir")
[ "$got" = "$ref" ] || fail "encrypted run's weights $got differ from the plain run's $ref"
echo "encryption: ok (resumed at step $from with the right key; weights $got equal the plain run's; no key and a wrong key refused)"
