# Packets lost on the way (nftables in a host's namespace, the link up):
# n2 drops 3% of its packets each way from step 100. TCP resends them, the
# job goes on slower with no restart and ends with the weights of the job
# on a clean network. (All of them dropped, a partition, is a host cut off
# as in link_down.sh: `scripts/cluster/loss.sh n2 100` names and leaves it
# out the same way.)
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
job job.yaml 2 200 10
"$RINGMASTER" run job.yaml --run-dir "$WORK/ref" >ref.txt 2>&1 || { cat ref.txt; fail "the reference run failed"; }

on n0 "$RINGMASTER" run job.yaml --run-dir "$WORK/lossy" --set launch.hostfile="$RINGMASTER_CLUSTER_DIR/hostfile" \
  >lossy.txt 2>&1 &
runner=$!
lossy_at=$(when_step "$WORK/lossy" 100 "$CLUSTER/loss.sh" n2 3)
wait $runner || { cat lossy.txt; fail "the run on a lossy link failed"; }
ended_at=$(date +%s.%N)
"$CLUSTER/loss.sh" n2 off >/dev/null
[ ! -e "$WORK/lossy/restarts.jsonl" ] || { cat lossy.txt; fail "a lossy link caused a restart"; }

"$PYTHON" - "$WORK" "$lossy_at" "$ended_at" <<'PY'
import json, sys
work, lossy_at, ended_at = sys.argv[1], *map(float, sys.argv[2:])
ref = json.load(open(f"{work}/ref/summary.json"))["weights_digest"]
s = json.load(open(f"{work}/lossy/summary.json"))
assert s["weights_digest"] == ref, (s["weights_digest"], ref)
print(f"3% loss on n2 from step 100: finished {ended_at - lossy_at:.1f} s later, no restart, "
      f"weights {ref} as on a clean network")
PY
echo "packet_loss: ok"
