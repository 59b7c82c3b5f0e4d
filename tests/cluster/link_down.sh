# A host's link goes down mid-run (the host goes on running, cut off).
# Whichever notices first names it: mpirun, through the TCP keepalive
# ringmaster run sets across hosts (its daemon there stops answering), or
# the coordinator's hang watch (the host's workers silent, the host
# answering nothing on the network; mpirun would otherwise wait for it
# for ever). ringmaster run ends the job, leaves the host out
# (RUN_DIR/hostfile.live) and restarts from the newest checkpoint on the
# hosts left, ending with the weights of the same job never interrupted.
# Prints how long naming the host and resuming took.
source "$(dirname "$0")/lib.sh"

# three hosts of one slot: the coordinator on n0, worker 0 on n1, worker 1 on n2
up 3 --slots 1
job job.yaml 2 400 10
"$RINGMASTER" run job.yaml --run-dir "$WORK/ref" >ref.txt 2>&1 || { cat ref.txt; fail "the reference run failed"; }
on n0 "$RINGMASTER" run job.yaml --run-dir "$WORK/cut" --set launch.hostfile="$RINGMASTER_CLUSTER_DIR/hostfile" \
  >cut.txt 2>&1 &
runner=$!

# n2's link goes down after 150 steps; then the moments (epoch seconds)
# the host is named and the restart resumes are noted
down_at=
for ((i = 0; i < 1200; i++)); do
  if [ -f cut/metrics.jsonl ] && [ "$(wc -l <cut/metrics.jsonl)" -ge 150 ]; then
    "$CLUSTER/link.sh" n2 down >/dev/null
    down_at=$(date +%s.%N)
    break
  fi
  sleep 0.1
done
[ -n "$down_at" ] || { kill $runner; fail "the run never reached step 150"; }
named_at= resumed_at=
named="hang: host n2 is unreachable: worker 1 \(rank 2, host n2|host n2 was lost: mpirun lost its daemon there \(it ran worker 1 \(rank 2\)\)"
for ((i = 0; i < 1200; i++)); do
  [ -z "$named_at" ] && grep -qE "$named" cut.txt && named_at=$(date +%s.%N)
  [ -z "$resumed_at" ] && grep -q '"event":"resume"' cut/events.jsonl && resumed_at=$(date +%s.%N)
  [ -n "$resumed_at" ] || ! kill -0 $runner 2>/dev/null && break
  sleep 0.1
done
wait $runner || { cat cut.txt; fail "the run did not recover from n2's link going down"; }
grep -qE "$named" cut.txt || { cat cut.txt; fail "n2 was not named as cut off or lost"; }
grep -q "host n2 is unreachable" cut.txt && expect_in cut.txt "and n2 does not answer on the network"
expect_in cut.txt "host n2 is left out from now on: 2 workers on 2 hosts"
# nothing the job ran is left on the hosts still reachable
for h in n0 n1; do
  left=$(on $h ps -e -o args | grep -E '^(mpirun|orted|\S*ringmaster)' || true)
  [ -z "$left" ] || fail "left running on $h after the run: $left"
done
"$PYTHON" - "$WORK" "$down_at" "${named_at:-0}" "${resumed_at:-0}" <<'PY'
import json, sys
work, down_at, named_at, resumed_at = sys.argv[1], *map(float, sys.argv[2:])
ref = json.load(open(f"{work}/ref/summary.json"))
cut = json.load(open(f"{work}/cut/summary.json"))
assert cut["weights_digest"] == ref["weights_digest"], (cut["weights_digest"], ref["weights_digest"])
assert cut["workers"] == 2, cut["workers"]
restarts = [json.loads(l) for l in open(f"{work}/cut/restarts.jsonl")]
assert len(restarts) == 1 and ("host n2 is unreachable" in restarts[0]["cause"]
                               or "host n2 was lost" in restarts[0]["cause"]), restarts
hosts = sorted(l.split()[2] for l in open(f"{work}/cut/ranks.txt"))
assert len(hosts) == 3 and "n2" not in hosts and "n1" in hosts, hosts
assert named_at > down_at and resumed_at > named_at, (down_at, named_at, resumed_at)
named_s, resumed_s = named_at - down_at, resumed_at - down_at
# keepalive (3/4 of fault.hang_timeout_s 10) or the hang watch (10 s and
# a 2 s network probe), and a few s for a loaded machine
assert named_s < 10 + 8, named_s
print(f"n2's link down: n2 named after {named_s:.1f} s (fault.hang_timeout_s 10), training resumed "
      f"after {resumed_s:.1f} s on n0+n1 from step {cut['resumed_from_step']}, "
      f"weights {cut['weights_digest']} as never interrupted")
PY
echo "link_down: ok"
