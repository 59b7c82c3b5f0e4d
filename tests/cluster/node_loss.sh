# A host dies mid-run (its namespace killed, everything on it with it):
# ringmaster run names the host and the ranks it ran, restarts from the
# newest checkpoint on the hosts left (RUN_DIR/hostfile.live), and the run
# ends with the weights of the same job never interrupted; with
# fault.min_workers, a loss that leaves too few slots goes on with fewer
# workers and the same sample sequence.
source "$(dirname "$0")/lib.sh"

# kill_when RUN STEP HOST: kills HOST once RUN has logged STEP steps; prints the time.
kill_when() {
  local i
  for ((i = 0; i < 1200; i++)); do
    if [ -f "$1/metrics.jsonl" ] && [ "$(wc -l <"$1/metrics.jsonl")" -ge "$2" ]; then
      "$CLUSTER/kill-host.sh" "$3"
      date +%s.%N
      return
    fi
    sleep 0.1
  done
  fail "the run never reached step $2"
}

# 1. three hosts of one slot: the coordinator on n0, worker 0 on n1, worker 1 on n2; n2 dies
up 3 --slots 1
mlp_job job.yaml 2 400 20
"$RINGMASTER" run job.yaml --run-dir "$WORK/ref" >ref.txt 2>&1 || { cat ref.txt; fail "the reference run failed"; }
on n0 "$RINGMASTER" run job.yaml --run-dir "$WORK/lost" --set launch.hostfile="$RINGMASTER_CLUSTER_DIR/hostfile" \
  >lost.txt 2>&1 &
runner=$!
killed_at=$(kill_when "$WORK/lost" 150 n2)
wait $runner || { cat lost.txt; fail "the run did not recover from losing n2"; }
expect_in lost.txt "host n2 was lost: mpirun lost its daemon there (it ran worker 1 (rank 2))"
expect_in lost.txt "host n2 is left out from now on: 2 workers on 2 hosts"
"$PYTHON" - "$WORK" "$killed_at" <<'PY'
import json, os, sys
work, killed_at = sys.argv[1], float(sys.argv[2])
ref = json.load(open(f"{work}/ref/summary.json"))
lost = json.load(open(f"{work}/lost/summary.json"))
assert lost["weights_digest"] == ref["weights_digest"], (lost["weights_digest"], ref["weights_digest"])
restarts = [json.loads(l) for l in open(f"{work}/lost/restarts.jsonl")]
assert len(restarts) == 1 and "host n2 was lost" in restarts[0]["cause"], restarts
named_s = restarts[0]["time"] - killed_at
assert named_s < 20, named_s  # within fault.hang_timeout_s
hosts = sorted(l.split()[2] for l in open(f"{work}/lost/ranks.txt"))
assert len(hosts) == 3 and "n2" not in hosts and "n1" in hosts, hosts
print(f"n2 killed: named within {max(named_s, 0):.0f} s (whole seconds), resumed on n0+n1 from "
      f"step {lost['resumed_from_step']}, weights {lost['weights_digest']} as never interrupted")
PY

# 2. n0 one slot, n1 and n2 two: 4 workers; n2 dies and 3 slots are left:
# with fault.min_workers 2 the job goes on with 3 (the batch of 96 splits
# over 3)
up 3 --slots 2
mlp_job job4.yaml 4 300 20
"$RINGMASTER" run job4.yaml --run-dir "$WORK/ref4" >ref4.txt 2>&1 || { cat ref4.txt; fail "the 4-worker reference failed"; }
printf 'n0 slots=1\nn1 slots=2\nn2 slots=2\n' >hosts4
on n0 "$RINGMASTER" run job4.yaml --run-dir "$WORK/shrink" --set launch.hostfile="$WORK/hosts4" \
  --set fault.min_workers=2 >shrink.txt 2>&1 &
runner=$!
kill_when "$WORK/shrink" 120 n2 >/dev/null
wait $runner || { cat shrink.txt; fail "the run did not go on with fewer workers"; }
expect_in shrink.txt "host n2 was lost: mpirun lost its daemon there (it ran worker 2 (rank 3), worker 3 (rank 4))"
expect_in shrink.txt "host n2 is left out from now on: 3 workers on 2 hosts"
"$PYTHON" - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
ref = [json.loads(l) for l in open(f"{work}/ref4/metrics.jsonl")]
got = [json.loads(l) for l in open(f"{work}/shrink/metrics.jsonl")]
s = json.load(open(f"{work}/shrink/summary.json"))
assert s["workers"] == 3 and len(got) == len(ref) == 300, (s["workers"], len(got))
# the same samples in every step, whoever trained them
assert [m["batch_digest"] for m in got] == [m["batch_digest"] for m in ref]
print(f"n2 killed: went on with 3 workers from step {s['resumed_from_step']}, the same 300 batches")
PY
echo "node_loss: ok"
