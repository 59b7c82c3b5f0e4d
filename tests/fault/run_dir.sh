# --run-dir: a user's own folder (not empty, not a run) is refused and left
# exactly as it was (files, mode); a new directory is created private; an
# empty one is taken and made private, said so. A resume that is refused
# (other --set values change the training) changes nothing in the run
# directory: config.yaml, the logs and the checkpoints are as they were.
source "$(dirname "$0")/lib.sh"
snapshot() { # snapshot DIR: DIR's mode, and every path, mode, size, mtime and checksum under it
  (cd "$1" && stat -c %a . && find . -mindepth 1 -printf '%p %m %s %T@\n' | sort && find . -type f -exec sha256sum {} + | sort)
}

mine=$WORK/my-folder
mkdir -m 0755 "$mine"
echo "my notes" >"$mine/notes.txt"
snapshot "$mine" >"$WORK/mine.before"
set +e
run_job "$mine" >"$WORK/mine.log" 2>&1
status=$?
set -e
[ "$status" -eq 3 ] || { cat "$WORK/mine.log"; fail "a run into a user's folder exited $status, not 3"; }
grep -q "$mine: exists, is not empty and is not a ringmaster run directory (it holds notes.txt): refusing" "$WORK/mine.log" ||
  { cat "$WORK/mine.log"; fail "the refusal does not say why"; }
! grep -q "mpirun" "$WORK/mine.log" || fail "mpirun was started for a refused run directory"
snapshot "$mine" | diff "$WORK/mine.before" - || fail "the user's folder was changed"
[ "$(stat -c %a "$mine")" = 755 ] || fail "the user's folder's mode was changed"

new=$WORK/runs/new
run_job "$new" --set train.steps=20 >"$WORK/new.log" 2>&1 || { cat "$WORK/new.log"; fail "a run into a new directory failed"; }
[ "$(stat -c %a "$new")" = 700 ] || fail "a new run directory is $(stat -c %a "$new"), not 700"

empty=$WORK/empty
mkdir -m 0755 "$empty"
run_job "$empty" --set train.steps=20 >"$WORK/empty.log" 2>&1 || { cat "$WORK/empty.log"; fail "a run into an empty directory failed"; }
[ "$(stat -c %a "$empty")" = 700 ] || fail "an empty directory taken as the run directory is $(stat -c %a "$empty")"
grep -q "$empty was empty: it is the run directory now, private (mode 0755 -> 0700)" "$WORK/empty.log" ||
  { cat "$WORK/empty.log"; fail "taking an empty directory was not said"; }

# a run that stopped (its summary removed, as if it had not finished), then
# a resume with another learning rate: refused before anything changes
dir=$WORK/resume
run_job "$dir" --set train.steps=60 >"$WORK/first.log" 2>&1 || { cat "$WORK/first.log"; fail "the first run failed"; }
rm "$dir/summary.json"
snapshot "$dir" >"$WORK/resume.before"
sleep 1 # a rewrite within the same second would still change the mtime's fraction
set +e
run_job "$dir" --set train.steps=60 --set train.lr=0.5 >"$WORK/refused.log" 2>&1
status=$?
set -e
[ "$status" -eq 3 ] || { cat "$WORK/refused.log"; fail "a resume with another lr exited $status, not 3"; }
grep -q "checkpoint $dir/checkpoints/step-00000060 was made by a different model, data or train config" "$WORK/refused.log" ||
  { cat "$WORK/refused.log"; fail "the refused resume does not say why"; }
! grep -q "mpirun" "$WORK/refused.log" || fail "mpirun was started for a refused resume"
snapshot "$dir" | diff "$WORK/resume.before" - || fail "the refused resume changed the run directory"
echo "run_dir: ok (a user's folder refused and untouched, new and empty directories private, a refused resume changed nothing)"
