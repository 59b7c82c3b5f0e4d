# Two namespace hosts: each is its own host to the OS and to MPI (its own
# hostname, /tmp and /dev/shm; MPI between them over TCP), and a job whose
# workers are spread over them trains to the same weights, bit for bit, as
# the same job with its workers on one host. The coordinator and worker 0
# run on n0, worker 1 on n1; then, with launch.coordinator_host, the
# coordinator alone on n1 and both workers on n0.
source "$(dirname "$0")/lib.sh"
up 2 --slots 2

# what the OS says: two hosts, one's shared memory invisible to the other
[ "$(on n0 hostname)" = n0 ] && [ "$(on n1 hostname)" = n1 ] || fail "hostnames"
on n0 sh -c 'echo n0 >/dev/shm/rm-probe && echo n0 >/tmp/rm-probe'
on n1 sh -c '[ ! -e /dev/shm/rm-probe ] && [ ! -e /tmp/rm-probe ]' || fail "n1 sees n0's /dev/shm or /tmp"
echo "n0's /dev/shm and /tmp are invisible on n1"

# what MPI says: ranks on both hosts, local ranks per host
on n0 mpirun --allow-run-as-root -np 4 sh -c 'echo "$(hostname) $OMPI_COMM_WORLD_RANK $OMPI_COMM_WORLD_LOCAL_RANK"' \
  | sort >ranks.txt
[ "$(cat ranks.txt)" = "$(printf 'n0 0 0\nn0 1 1\nn1 2 0\nn1 3 1')" ] || { cat ranks.txt; fail "mpirun placement"; }

job job.yaml 2 200
on n0 "$RINGMASTER" run job.yaml --run-dir "$WORK/spread" --set fault.max_restarts=0 >spread.txt 2>&1 || { cat spread.txt; fail "the 2-host run failed"; }
"$RINGMASTER" run job.yaml --run-dir "$WORK/one" --set fault.max_restarts=0 >one.txt 2>&1 || { cat one.txt; fail "the 1-host run failed"; }
# launch.coordinator_host: rank 0 on n1, both workers on the other slots (n0's)
on n0 "$RINGMASTER" run job.yaml --run-dir "$WORK/placed" --set launch.hostfile="$RINGMASTER_CLUSTER_DIR/hostfile" \
  --set launch.coordinator_host=n1 --set fault.max_restarts=0 >placed.txt 2>&1 ||
  { cat placed.txt; fail "the run with the coordinator on n1 failed"; }
expect_in placed.txt "-np 1 --host n1 "
expect_in placed.txt "-np 2 --host n0:2,n1:1 "
"$PYTHON" - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
ranks = [l.split() for l in open(f"{work}/spread/ranks.txt")]
hosts = {r[1]: r[2] for r in ranks}
assert hosts == {"coordinator": "n0", "0": "n0", "1": "n1"}, ranks
spread = json.load(open(f"{work}/spread/summary.json"))
one = json.load(open(f"{work}/one/summary.json"))
assert spread["weights_digest"] == one["weights_digest"], (spread["weights_digest"], one["weights_digest"])
placed = {r[1]: r[2] for r in (l.split() for l in open(f"{work}/placed/ranks.txt"))}
assert placed == {"coordinator": "n1", "0": "n0", "1": "n0"}, placed
assert json.load(open(f"{work}/placed/summary.json"))["weights_digest"] == one["weights_digest"]
print(f"2 workers on n0+n1 and on one host: weights {one['weights_digest']} both; "
      f"{spread['samples_per_second']:.0f} vs {one['samples_per_second']:.0f} samples/s")
PY
echo "two_hosts: ok"
