# Packets lost on the way (nftables in a host's namespace, the link up):
#   1. n2 drops 3% of its packets each way from step 100: TCP resends
#      them, the job goes on slower with no restart, and ends with the
#      weights of the job on a clean network;
#   2. n2 drops all of them (a partition: nothing refused, nothing
#      answered): n2 is named within about fault.hang_timeout_s, left out,
#      and the job resumes on n0+n1 to the same weights.
source "$(dirname "$0")/lib.sh"
command -v nft >/dev/null || { echo "SKIP: no nft (Debian: nftables; scripts/install-deps.sh --tests)"; exit 77; }

# after RUN has logged STEP steps: ACTION...; prints the time
when_step() {
  local run=$1 step=$2 i
  shift 2
  for ((i = 0; i < 1200; i++)); do
    if [ -f "$run/metrics.jsonl" ] && [ "$(wc -l <"$run/metrics.jsonl")" -ge "$step" ]; then
      "$@" >/dev/null
      date +%s.%N
      return
    fi
    sleep 0.1
  done
  fail "$run never reached step $step"
}

# three hosts of one slot: the coordinator on n0, worker 0 on n1, worker 1 on n2
up 3 --slots 1
job job.yaml 2 250 10
"$RINGMASTER" run job.yaml --run-dir "$WORK/ref" >ref.txt 2>&1 || { cat ref.txt; fail "the reference run failed"; }

on n0 "$RINGMASTER" run job.yaml --run-dir "$WORK/lossy" --set launch.hostfile="$RINGMASTER_CLUSTER_DIR/hostfile" \
  >lossy.txt 2>&1 &
runner=$!
lossy_at=$(when_step "$WORK/lossy" 100 "$CLUSTER/loss.sh" n2 3)
wait $runner || { cat lossy.txt; fail "the run on a lossy link failed"; }
ended_at=$(date +%s.%N)
"$CLUSTER/loss.sh" n2 off >/dev/null
[ ! -e "$WORK/lossy/restarts.jsonl" ] || { cat lossy.txt; fail "a lossy link caused a restart"; }

on n0 "$RINGMASTER" run job.yaml --run-dir "$WORK/cut" --set launch.hostfile="$RINGMASTER_CLUSTER_DIR/hostfile" \
  >cut.txt 2>&1 &
runner=$!
cut_at=$(when_step "$WORK/cut" 100 "$CLUSTER/loss.sh" n2 100)
wait $runner || { cat cut.txt; fail "the run did not recover from n2's partition"; }
grep -qE "hang: host n2 is unreachable: worker 1 \(rank 2, host n2|host n2 was lost: mpirun lost its daemon there" cut.txt ||
  { cat cut.txt; fail "n2 was not named as cut off or lost"; }
expect_in cut.txt "host n2 is left out from now on: 2 workers on 2 hosts"
"$PYTHON" - "$WORK" "$lossy_at" "$ended_at" "$cut_at" <<'PY'
import json, sys
work, lossy_at, ended_at, cut_at = sys.argv[1], *map(float, sys.argv[2:])
ref = json.load(open(f"{work}/ref/summary.json"))["weights_digest"]
for run in ("lossy", "cut"):
    s = json.load(open(f"{work}/{run}/summary.json"))
    assert s["weights_digest"] == ref, (run, s["weights_digest"], ref)
restarts = [json.loads(l) for l in open(f"{work}/cut/restarts.jsonl")]
assert len(restarts) == 1 and "host n2" in restarts[0]["cause"], restarts
named_s = restarts[0]["time"] - cut_at
assert named_s < 10 + 8, named_s
print(f"3% loss on n2 from step 100: finished in {ended_at - lossy_at:.1f} s more, no restart; "
      f"n2 partitioned at step 100: named within {max(named_s, 0):.0f} s (whole seconds), resumed on n0+n1; "
      f"both with weights {ref} as on a clean network")
PY
echo "packet_loss: ok"
