# Private on disk whatever the umask: under umask 000 the run directory
# and everything in it (logs, config, ranks, audit trail, checkpoints,
# restarts after a failure, timelines, plots, the doctor's report) are
# 0700 / 0600, and so is a new key. A run
# directory owned by another user and a `latest` symlink leading out of
# the checkpoint root are refused.
source "$(dirname "$0")/lib.sh"
umask 000
key=$WORK/key
"$RM" keygen "$key" >/dev/null
[ "$(stat -c %a "$key")" = 600 ] || fail "keygen under umask 000 made mode $(stat -c %a "$key")"

dir=$WORK/runs/private
start_job "$dir" "$WORK/run.log" --set security.key_file="$key" --set observe.trace_steps=[200,203]
wait_for "$dir/checkpoints/step-00000080/manifest.json"
kill -9 "$(pid_of 1 "$dir")" # a restart, so the supervisor writes too
wait_job
[ "$JOB_STATUS" -eq 0 ] || { cat "$WORK/run.log"; fail "the run failed ($JOB_STATUS)"; }
[ -s "$dir/restarts.jsonl" ] || fail "no restart was recorded"
[ -s "$dir/trace.json" ] || fail "no timeline was written"
"$RM" plot "$dir" >"$WORK/plot.log" 2>&1 || { cat "$WORK/plot.log"; fail "ringmaster plot failed"; }
[ -s "$dir/plots/loss.png" ] || fail "no plot was drawn"
"$RM" doctor "$HERE/job.yaml" --set data.dir="$DATA" --set security.key_file="$key" --run-dir "$WORK/runs/doctor" \
  >"$WORK/doctor.log" 2>&1 || { cat "$WORK/doctor.log"; fail "ringmaster doctor failed"; }
open=$(find "$WORK/runs" \( -type d ! -perm 0700 \) -o \( -type f ! -perm 0600 \))
[ -z "$open" ] || { ls -la $open; fail "not private under umask 000: $open"; }
n=$(find "$dir" -type f | wc -l)
[ "$n" -ge 12 ] || fail "expected a full run directory, found $n files"

# an existing run directory with loose modes is tightened on reuse
loose=$WORK/loose-run
mkdir -m 0755 "$loose"
run_job "$loose" --set train.steps=20 >"$WORK/loose.log" 2>&1 || { cat "$WORK/loose.log"; fail "run in an existing directory failed"; }
[ "$(stat -c %a "$loose")" = 700 ] || fail "an existing run directory was left $(stat -c %a "$loose")"

# another user's run directory
theirs=$WORK/theirs
mkdir -m 0777 "$theirs"
chown 65534:65534 "$theirs" 2>/dev/null || { echo "SKIP part: cannot chown (not root)"; theirs=; }
if [ -n "$theirs" ]; then
  if run_job "$theirs" --set train.steps=20 >"$WORK/theirs.log" 2>&1; then fail "ran in another user's directory"; fi
  expect_in "$WORK/theirs.log" "$theirs: belongs to uid 65534, not to this user" "foreign run directory"
fi

# latest pointing out of the checkpoint root: resume, list and export refuse it
sym=$WORK/sym
run_job "$sym" --set train.steps=80 >"$WORK/sym.log" 2>&1 || { cat "$WORK/sym.log"; fail "run failed"; }
mkdir -p "$WORK/elsewhere/step-00000040"
rm "$sym/summary.json" "$sym/checkpoints/latest"
ln -s "$WORK/elsewhere/step-00000040" "$sym/checkpoints/latest"
if run_job "$sym" --set train.steps=120 >"$WORK/sym2.log" 2>&1; then fail "resumed past a latest symlink leaving the root"; fi
expect_in "$WORK/sym2.log" "checkpoints/latest is a symbolic link to $WORK/elsewhere/step-00000040, outside" "latest symlink (run)"
if "$RM" ckpt list "$sym" >"$WORK/sym3.log" 2>&1; then fail "ckpt list followed latest out of the root"; fi
expect_in "$WORK/sym3.log" "outside" "latest symlink (ckpt list)"
# a symlink inside the root is fine
rm "$sym/checkpoints/latest"
ln -s step-00000080 "$sym/checkpoints/latest"
"$RM" ckpt list "$sym" >"$WORK/sym4.log" 2>&1 || { cat "$WORK/sym4.log"; fail "ckpt list refused a latest inside the root"; }
echo "private_modes: ok ($n files, all 0600 in 0700 directories under umask 000; foreign run dir and escaping latest refused)"
