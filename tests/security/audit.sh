# The audit trail of a real run: start (config and dataset index hashes,
# the same ones the checkpoint manifests carry), committed checkpoints with
# their digests, a restart with its cause, a stop, a resume, the end; the
# chain verifies, and a deleted or an edited line is caught at its number.
source "$(dirname "$0")/lib.sh"
dir=$WORK/run
start_job "$dir" "$WORK/run1.log"
wait_for "$dir/checkpoints/step-00000080/manifest.json"
kill -9 "$(pid_of 1 "$dir")"
wait_for "$dir/restarts.jsonl"
wait_for "$dir/checkpoints/step-00000160/manifest.json"
kill -USR1 "$JOB_PID"
wait_job
[ "$JOB_STATUS" -eq 75 ] || { cat "$WORK/run1.log"; fail "expected exit 75 after USR1, got $JOB_STATUS"; }
run_job "$dir" >"$WORK/run2.log" 2>&1 || { cat "$WORK/run2.log"; fail "resume failed"; }

a=$dir/audit.jsonl
"$RM" audit verify "$dir" >"$WORK/verify.log" || { cat "$WORK/verify.log"; fail "audit verify failed on an intact trail"; }
expect_in "$WORK/verify.log" "OK, " "audit verify"
events=$(grep -o '"event":"[a-z_]*"' "$a" | cut -d'"' -f4 | uniq | tr '\n' ' ')
for e in run_start checkpoint_committed restart resume run_end; do
  case " $events " in *" $e "*) ;; *) fail "no $e event in the audit trail: $events" ;; esac
done
grep -q '"event":"restart","attempt":1,"exit_status":[0-9]*,"cause":"' "$a" || fail "the restart has no cause"
grep -q '"event":"run_end","status":"preempted"' "$a" || fail "no preempted run_end"
grep -q '"event":"run_end","status":"completed"' "$a" || fail "no completed run_end"
grep -q '"event":"resume","step":' "$a" || fail "no resume from a checkpoint"
grep -A1 '"event":"run_start"' "$a" | tail -1 | grep -q '"event":"resume"' || fail "the resume does not follow its run_start"
for f in '"uid":[0-9]*' '"user":"[^"]*"' '"host":"[^"]*"' '"time":"20[0-9-]*T'; do
  grep -q "$f" <(head -1 "$a") || fail "line 1 lacks $f"
done
# the hashes in run_start are the checkpoints'
cfg=$(grep -o '"event":"run_start","config_hash":"[0-9a-f]*"' "$a" | head -1 | grep -o '[0-9a-f]\{16\}')
data=$(grep -o '"dataset_index_hash":"[0-9a-f]*"' "$a" | head -1 | grep -o '[0-9a-f]\{16\}')
"$RM" ckpt verify "$dir" >"$WORK/ckv.log" 2>&1 || { cat "$WORK/ckv.log"; fail "ckpt verify failed"; }
expect_in "$WORK/ckv.log" "config_hash $cfg  dataset_index_hash $data" "hashes in ckpt verify"
# and each committed checkpoint's digest is its manifest's BLAKE2b
last=$(ls -d "$dir"/checkpoints/step-* | tail -1)
dig=$(python3 -c "import hashlib,sys; print(hashlib.blake2b(open(sys.argv[1],'rb').read(), digest_size=32).hexdigest())" "$last/manifest.json")
grep -q "\"dir\":\"$(basename "$last")\",\"manifest_blake2b\":\"$dig\"" "$a" || fail "no audit record with $last's digest $dig"

n=$(wc -l <"$a")
cp "$a" "$WORK/audit.orig"
sed -i '4d' "$a"
if "$RM" audit verify "$dir" >"$WORK/del.log"; then fail "audit verify missed a deleted line"; fi
expect_in "$WORK/del.log" "FAILED at line 4: .*1 line was deleted" "deleted line"

cp "$WORK/audit.orig" "$a"
sed -i '3s/"step":\([0-9]\)/"step":9\1/' "$a"
cmp -s "$a" "$WORK/audit.orig" && fail "the edit did not change line 3"
if "$RM" audit verify "$dir" >"$WORK/edit.log"; then fail "audit verify missed an edited line"; fi
expect_in "$WORK/edit.log" "FAILED at line 3: .*line 3 was edited" "edited line"
# the end of the chain is pinned: summary.json (and every checkpoint)
# recorded its head, so removing the last lines, run_end with them, is found
cp "$WORK/audit.orig" "$a"
head -n -2 "$WORK/audit.orig" >"$a"
if "$RM" audit verify "$dir" >"$WORK/tail.log"; then fail "audit verify missed the removal of the last lines"; fi
expect_in "$WORK/tail.log" "FAILED at line $((n - 1)): .*summary.json recorded line $n of the trail, which ends at line $((n - 2)): its last 2 lines were removed" "lost tail"
grep -q '"audit_seq": '"$n"',' "$dir/summary.json" || fail "summary.json does not record the head at line $n"
grep -q '"audit": {"seq": [0-9]*, "head": "[0-9a-f]\{64\}"}' "$last/manifest.json" || fail "the manifest does not record the audit head"
cp "$WORK/audit.orig" "$a"

# with security.key_file the chain is keyed: verify needs the run's key
key=$WORK/key
"$RM" keygen "$key" >/dev/null
kdir=$WORK/keyed
run_job "$kdir" --set security.key_file="$key" --set train.steps=40 >"$WORK/keyed.log" 2>&1 || { cat "$WORK/keyed.log"; fail "keyed run failed"; }
! grep -q '"prev":"' "$kdir/audit.jsonl" || fail "a run with a key wrote unkeyed audit lines"
grep -q '"prev_mac":"' "$kdir/audit.jsonl" || fail "no keyed audit lines"
"$RM" audit verify "$kdir" >"$WORK/kverify.log" || { cat "$WORK/kverify.log"; fail "the keyed trail does not verify with the run's key"; }
expect_in "$WORK/kverify.log" ", keyed;" "keyed verify"
echo "audit: ok ($n lines: $events; a deleted and an edited line, and a lost tail caught; keyed with the key)"
