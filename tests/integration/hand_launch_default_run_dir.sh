# The README's hand launch, `mpirun -np 1 ringmaster-coordinator job.yaml :
# -np N ringmaster-worker job.yaml`, with a config that leaves run_dir to
# its default (runs/<config>-<time> under the working directory): the
# ranks run the same config, so the job must train.
#
# Registered DISABLED: today the coordinator fills in its default run_dir
# before it hashes its config, the workers do not, and every worker is
# refused as "runs a different job config". Enable it with the fix.
source "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpirun}
write_job job.yaml
sed -i 's/^  epochs: 1/  steps: 30/' job.yaml
status=0
timeout -k 5 120 "$MPIRUN" --allow-run-as-root --oversubscribe \
  -np 1 "$BIN/ringmaster-coordinator" job.yaml : \
  -np 2 "$BIN/ringmaster-worker" job.yaml >out.txt 2>&1 || status=$?
[ "$status" -eq 0 ] || { cat out.txt; fail "a hand launch with one config for every rank exited with status $status"; }
expect_in out.txt "done: 30 steps on 2 workers"
ls runs/job-*/summary.json >/dev/null || fail "no run directory under runs/"
