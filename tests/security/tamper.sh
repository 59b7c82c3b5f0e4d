# Damage refused by name: one flipped byte in a sealed shard, a sealed
# shard cut short, one flipped byte in a sealed checkpoint, and a key file
# that group or others can read. Nothing is ever decrypted into garbage
# and trained on.
source "$(dirname "$0")/lib.sh"
key=$WORK/key
"$RM" keygen "$key" >/dev/null
enc=$WORK/data
import_encrypted "$key" "$enc"
run_enc() { # run_enc RUN_DIR LOG [options]
  local dir=$1 log=$2; shift 2
  "$RM" run "$HERE/job.yaml" --set data.dir="$enc" --set security.key_file="$key" --set train.steps=40 \
    --set fault.max_restarts=0 --run-dir "$dir" "$@" >"$log" 2>&1
}

# one flipped byte in the middle of a shard's ciphertext
cp "$enc/train/shard-00002.rms" "$WORK/shard2.bak"
flip_byte "$enc/train/shard-00002.rms" 3000000
if run_enc "$WORK/flip" "$WORK/flip.log"; then fail "trained on a shard with a flipped byte"; fi
expect_in "$WORK/flip.log" "shard-00002.rms: chunk 11 of 30 fails authentication" "flipped byte"
[ ! -e "$WORK/flip/summary.json" ] || fail "the run with a damaged shard completed"
cp "$WORK/shard2.bak" "$enc/train/shard-00002.rms"

# a flipped byte in the header: bound to every chunk
flip_byte "$enc/train/shard-00002.rms" 40
if run_enc "$WORK/flip-header" "$WORK/flip-header.log"; then fail "trained on a shard with a changed header"; fi
expect_in "$WORK/flip-header.log" "shard-00002.rms: chunk 0 of 30 fails authentication" "header byte"
cp "$WORK/shard2.bak" "$enc/train/shard-00002.rms"

# a shard cut short, anywhere
truncate -s -1000 "$enc/train/shard-00004.rms"
if run_enc "$WORK/trunc" "$WORK/trunc.log"; then fail "trained on a truncated shard"; fi
expect_in "$WORK/trunc.log" "shard-00004.rms: encrypted file is .* bytes, its header implies .* (truncated or extended)" "truncated shard"

# (a cut at a chunk boundary, reordered chunks and a lost final chunk are
# checked at the library level by test_crypto)
import_encrypted "$key" "$WORK/data2"
enc=$WORK/data2
run_enc "$WORK/good" "$WORK/good.log" || { cat "$WORK/good.log"; fail "the run on intact sealed data failed"; }

# a flipped byte in a sealed checkpoint file: ckpt verify names it
ck=$(ls -d "$WORK"/good/checkpoints/step-* | tail -1)
flip_byte "$ck/worker-00001.rmc" 5000
if "$RM" ckpt verify "$WORK/good" >"$WORK/ckverify.log" 2>&1; then fail "ckpt verify passed a damaged sealed checkpoint"; fi
expect_in "$WORK/ckverify.log" "worker-00001.rmc: chunk 0 of 1 fails authentication" "flipped checkpoint byte"

# a loose key file is refused by name, by run, validate and import
chmod 644 "$key"
if run_enc "$WORK/loose" "$WORK/loose.log"; then fail "a run took a key readable by others"; fi
expect_in "$WORK/loose.log" "key file $key is accessible by group or others (mode 0644)" "loose key (run)"
if "$RM" data import-idx --images "$SRC/t10k-images-idx3-ubyte.gz" --labels "$SRC/t10k-labels-idx1-ubyte.gz" \
  --out "$WORK/x" --encrypt --key-file "$key" >"$WORK/loose2.log" 2>&1; then fail "import took a loose key"; fi
expect_in "$WORK/loose2.log" "key file $key is accessible by group or others" "loose key (import)"
chmod 640 "$key"
if "$RM" validate "$HERE/job.yaml" --set data.dir="$enc" --set security.key_file="$key" >"$WORK/loose3.log" 2>&1; then
  fail "validate took a group-readable key"
fi
expect_in "$WORK/loose3.log" "mode 0640" "group-readable key"
chmod 600 "$key"
printf 'short' >"$WORK/short-key"; chmod 600 "$WORK/short-key"
if "$RM" data import-idx --images "$SRC/t10k-images-idx3-ubyte.gz" --labels "$SRC/t10k-labels-idx1-ubyte.gz" \
  --out "$WORK/y" --encrypt --key-file "$WORK/short-key" >"$WORK/short.log" 2>&1; then fail "import took a 5-byte key"; fi
expect_in "$WORK/short.log" "short-key holds 5 bytes; a key is exactly 32" "short key"
# a truncated IDX file: the import fails naming it, and leaves no output folder behind
head -c 3000000 "$SRC/train-images-idx3-ubyte.gz" >"$WORK/cut-images.gz"
if "$RM" data import-idx --images "$WORK/cut-images.gz" --labels "$SRC/train-labels-idx1-ubyte.gz" \
  --out "$WORK/imported/train" >"$WORK/cut.log" 2>&1; then fail "imported a truncated IDX file"; fi
expect_in "$WORK/cut.log" "cut-images.gz" "truncated IDX file"
[ ! -e "$WORK/imported" ] || { ls -R "$WORK/imported"; fail "a failed import left $WORK/imported behind"; }
echo "tamper: ok (flipped shard byte, changed header, truncated shard, flipped checkpoint byte, loose and short keys refused by name)"
