# A new user's mistakes: a typo in a key, a wrong type, a missing dataset,
# a global batch that does not divide over the workers. `ringmaster run`
# refuses each before launching anything, exits non-zero and names
# file:line:col; `ringmaster validate` accepts the good config.
source "$(dirname "$0")/lib.sh"
write_job job.yaml
# job.yaml's lines, as the messages cite them:
#   6: "  dir: ..."  10: "  global_batch: 128"  13: "  lr: 0.002"

"$RINGMASTER" validate job.yaml >validate.txt 2>&1 || { cat validate.txt; fail "validate refused the good config"; }
expect_in validate.txt "job.yaml: ok (60000 training samples, 469 steps, 2 workers)"

# refused NAME EXPECTED [ringmaster run arguments...]: run must fail before
# launching, print EXPECTED, and leave no run directory behind.
refused() {
  local name=$1 expected=$2
  shift 2
  local status=0
  "$RINGMASTER" run "$@" --run-dir "$WORK/run-$name" >"$name.txt" 2>&1 || status=$?
  [ "$status" -ne 0 ] || { cat "$name.txt"; fail "$name: ringmaster run succeeded"; }
  expect_in "$name.txt" "$expected"
  ! grep -q "mpirun" "$name.txt" || fail "$name: mpirun was started for a refused config"
  [ ! -e "$WORK/run-$name" ] || fail "$name: a run directory was created for a refused config"
  # validate says the same
  status=0
  "$RINGMASTER" validate "$@" >"$name.validate.txt" 2>&1 || status=$?
  [ "$status" -ne 0 ] || fail "$name: ringmaster validate accepted it"
  expect_in "$name.validate.txt" "$expected"
  echo "$name: $(grep -F -- "$expected" "$name.txt" | head -1)"
}

sed 's/^  lr: /  lr_rate: /' job.yaml >typo.yaml
refused typo "typo.yaml:13:3: unknown key 'lr_rate' in section 'train' (did you mean 'lr'?)" typo.yaml

sed 's/global_batch: 128/global_batch: big/' job.yaml >wrong_type.yaml
refused wrong_type "wrong_type.yaml:10:17: train.global_batch must be an integer, got 'big'" wrong_type.yaml

sed 's/^  hidden: \[128\]/  hidden: 128/' job.yaml >scalar_list.yaml
refused scalar_list "scalar_list.yaml:3:11: model.hidden expects a list of integers" scalar_list.yaml

sed "s#^  dir: .*#  dir: $WORK/no-such-dataset#" job.yaml >missing_data.yaml
refused missing_data "missing_data.yaml:6:8: dataset directory $WORK/no-such-dataset does not exist" missing_data.yaml

refused indivisible "--set launch.workers: global batch 128 (job.yaml:10:17) does not divide evenly over 3 workers" job.yaml --workers 3

sed 's/^  workers: 2/  workers: 5/' job.yaml >five.yaml
refused indivisible_file "five.yaml:10:17: global batch 128 does not divide evenly over 5 workers" five.yaml

refused set_typo "--set train.lrr=0.1: unknown key 'train.lrr' (did you mean 'train.lr'?)" job.yaml --set train.lrr=0.1

# a bound said as a number, not 1.67772e+07
refused batch_bound "train.global_batch = 100000000 is out of range: must be >= 1 and <= 16777216" job.yaml \
  --set train.global_batch=100000000

# a coordinator host with no hostfile to find it in
refused coordinator_host "launch.coordinator_host n1 needs launch.hostfile" job.yaml --set launch.coordinator_host=n1

# the mpirun line across hosts, as a user would write it: the hostfile, the
# coordinator alone on its host, the interface, NCCL's settings passed on
printf 'alpha slots=2\nbeta slots=3\n' >hosts.txt
NCCL_IB_HCA=mlx5_0 NCCL_DEBUG=WARN "$RINGMASTER" run job.yaml --dry-run --run-dir "$WORK/dry" \
  --set launch.hostfile="$WORK/hosts.txt" --set launch.coordinator_host=beta --set launch.network_interface=ib0 \
  >dry.txt 2>&1 || { cat dry.txt; fail "--dry-run across hosts failed"; }
expect_in dry.txt "--hostfile $WORK/hosts.txt --mca oob_tcp_keepalive_time "
expect_in dry.txt "--mca btl_tcp_if_include ib0 --mca oob_tcp_if_include ib0 -x NCCL_SOCKET_IFNAME=ib0 -x NCCL_DEBUG -x NCCL_IB_HCA"
expect_in dry.txt "-np 1 --host beta $BIN/ringmaster-coordinator"
expect_in dry.txt "-np 2 --host alpha:2,beta:2 $BIN/ringmaster-worker"
echo "across hosts: $(grep -o -- '--hostfile.*' dry.txt | head -1)"

# a tab in the indentation is named as such
printf 'model:\n\thidden: [128]\n' >tab.yaml
refused tab "tab.yaml:2:1: invalid YAML: a tab character: YAML indents with spaces, never tabs" tab.yaml

# an empty file is not a job (it used to run a default 1-epoch job)
: >empty.yaml
refused empty "empty.yaml: is empty: a job config says at least where its data is" empty.yaml

# asking for help is not a mistake: the usage on stdout, exit 0, nothing run
for cmd in "run --help" "validate job.yaml -h" "data import-idx --help" "--help"; do
  $RINGMASTER $cmd >help.txt 2>&1 || fail "ringmaster $cmd exited $?"
  expect_in help.txt "ringmaster run CONFIG"
  ! grep -q "error" help.txt || fail "ringmaster $cmd printed an error"
done
[ ! -e runs ] || fail "ringmaster run --help created a run directory"
