# A GPT run stopped mid-epoch (SIGUSR1: checkpoint, exit 75) and resumed
# ends on the uninterrupted run's weights, bit for bit; so does one whose
# worker is killed (SIGKILL) and which the supervisor restarts from its
# last checkpoint; and a checkpoint exports as Hugging Face GPT-2
# safetensors.
source "$(dirname "$0")/lib.sh"
"$RM" run "$WORK/job.yaml" --run-dir "$WORK/stopped" --set train.steps=400 \
  --set checkpoint.every_steps=1000 >"$WORK/first.log" 2>&1 &
pid=$!
# stop it once it is well into the run
for _ in $(seq 1 600); do
  [ -f "$WORK/stopped/metrics.jsonl" ] && [ "$(wc -l <"$WORK/stopped/metrics.jsonl")" -ge 15 ] && break
  sleep 0.05
done
kill -USR1 "$pid"
set +e
wait "$pid"
status=$?
set -e
[ "$status" -eq 75 ] || { cat "$WORK/first.log"; fail "the stopped run exited $status, not 75"; }
ls "$WORK/stopped/checkpoints" | grep -q step- || fail "no emergency checkpoint"
# the same job (400 steps), resumed, against an uninterrupted 400-step run
run straight400 --set train.steps=400
"$RM" run "$WORK/job.yaml" --run-dir "$WORK/stopped" --set train.steps=400 \
  --set checkpoint.every_steps=1000 >"$WORK/resume.log" 2>&1 || { cat "$WORK/resume.log"; fail "resume failed"; }
from=$(json_field "$WORK/stopped/summary.json" resumed_from_step)
[ "$from" -gt 0 ] || fail "the second run did not resume (resumed_from_step $from)"
a=$(digest_of straight400)
b=$(digest_of stopped)
[ "$a" = "$b" ] || fail "resumed GPT run ended with weights $b, the uninterrupted one with $a"
echo "gpt resume: ok (stopped and resumed at step $from, and restarted after a killed worker; weights $a all ways)"

# A worker killed mid-run: the supervisor restarts from the newest checkpoint
"$RM" run "$WORK/job.yaml" --run-dir "$WORK/killed" --set train.steps=400 --set checkpoint.every_steps=50 \
  --set fault.max_restarts=1 --set fault.restart_backoff_s=0 >"$WORK/killed.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -f "$WORK/killed/metrics.jsonl" ] && [ "$(wc -l <"$WORK/killed/metrics.jsonl")" -ge 120 ] && break
  sleep 0.05
done
victim=$(awk '$2 == "1" {print $4}' "$WORK/killed/ranks.txt")
[ -n "$victim" ] || fail "no worker 1 in ranks.txt"
kill -9 "$victim"
set +e
wait "$pid"
status=$?
set -e
[ "$status" -eq 0 ] || { cat "$WORK/killed.log"; fail "the killed run did not recover (exit $status)"; }
grep -q '"exit_status":137' "$WORK/killed/restarts.jsonl" || fail "no restart recorded"
c=$(digest_of killed)
[ "$a" = "$c" ] || fail "the run restarted after a killed worker ended with weights $c, the uninterrupted one with $a"

# Export: Hugging Face GPT2LMHeadModel's names, Conv1D weights [in, out],
# the vocabulary padding stripped, config.json beside the weights.
mkdir -p "$WORK/export"
"$RM" ckpt export "$WORK/stopped" --format safetensors "$WORK/export/model.safetensors" >"$WORK/export.log" 2>&1 ||
  { cat "$WORK/export.log"; fail "ckpt export failed"; }
"$PYTHON" - "$WORK/export" <<'PY'
import json, struct, sys
d = sys.argv[1]
raw = open(f"{d}/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
t = {k: v for k, v in header.items() if k != "__metadata__"}
C, V, T, L = 32, 257, 32, 2
want = {"transformer.wte.weight": [V, C], "transformer.wpe.weight": [T, C],
        "transformer.ln_f.weight": [C], "transformer.ln_f.bias": [C]}
for l in range(L):
    p = f"transformer.h.{l}."
    want.update({p + "ln_1.weight": [C], p + "ln_1.bias": [C], p + "attn.c_attn.weight": [C, 3 * C],
                 p + "attn.c_attn.bias": [3 * C], p + "attn.c_proj.weight": [C, C], p + "attn.c_proj.bias": [C],
                 p + "ln_2.weight": [C], p + "ln_2.bias": [C], p + "mlp.c_fc.weight": [C, 4 * C],
                 p + "mlp.c_fc.bias": [4 * C], p + "mlp.c_proj.weight": [4 * C, C], p + "mlp.c_proj.bias": [C]})
got = {k: v["shape"] for k, v in t.items()}
assert got == want, sorted(set(got.items()) ^ set((k, tuple(v)) for k, v in want.items()))
assert all(v["dtype"] == "F32" for v in t.values())
cfg = json.load(open(f"{d}/config.json"))
assert cfg["model_type"] == "gpt2" and cfg["vocab_size"] == V and cfg["n_embd"] == C and cfg["n_layer"] == L, cfg
assert cfg["n_head"] == 2 and cfg["n_positions"] == T and cfg["activation_function"] == "gelu_new", cfg
print("export: ok,", len(t), "tensors")
PY
