# A GPT run stopped mid-epoch (SIGUSR1: checkpoint, exit 75) and resumed
# ends on the uninterrupted run's weights, bit for bit; so does one whose
# worker is killed (SIGKILL) and which the supervisor restarts from its
# last checkpoint; sampling from it is deterministic per seed; and a
# checkpoint exports as Hugging Face GPT-2 safetensors.
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

# Sampling from the finished run: the same seed gives the same text,
# another seed other text; a prompt longer than the context is refused.
"$RM" sample "$WORK/killed" --prompt "The " --tokens 24 --seed 5 >"$WORK/s1.txt" 2>"$WORK/s1.log" ||
  { cat "$WORK/s1.log"; fail "sample failed"; }
"$RM" sample "$WORK/killed" --prompt "The " --tokens 24 --seed 5 >"$WORK/s2.txt" 2>/dev/null
"$RM" sample "$WORK/killed" --prompt "The " --tokens 24 --seed 6 >"$WORK/s3.txt" 2>/dev/null
cmp -s "$WORK/s1.txt" "$WORK/s2.txt" || fail "the same seed gave different text"
! cmp -s "$WORK/s1.txt" "$WORK/s3.txt" || fail "seeds 5 and 6 gave the same text"
head -c 4 "$WORK/s1.txt" | grep -q "^The " || fail "the sample does not start with its prompt"
grep -q "from .*step-00000400 (step 400)" "$WORK/s1.log" || { cat "$WORK/s1.log"; fail "not sampled from step 400"; }
# past the context of 32: the window slides along, as many tokens as asked
"$RM" sample "$WORK/killed" --prompt "The " --tokens 100 --temperature 0.5 --seed 2 >"$WORK/s5.txt" 2>"$WORK/s5.log" ||
  { cat "$WORK/s5.log"; fail "sampling past the context failed"; }
grep -q "100 tokens (the context slid along)\|(end of text)" "$WORK/s5.log" || { cat "$WORK/s5.log"; fail "no slide"; }
if "$RM" sample "$WORK/killed" --prompt "$(printf 'x%.0s' $(seq 1 40))" >/dev/null 2>"$WORK/s4.log"; then
  fail "a prompt longer than the context was accepted"
fi
grep -q "longer than the context of 32 tokens" "$WORK/s4.log" || { cat "$WORK/s4.log"; fail "no clear error"; }

# Export: Hugging Face GPT2LMHeadModel's names, Conv1D weights [in, out],
# the vocabulary padding stripped, config.json beside the weights.
mkdir -p "$WORK/export"
"$RM" ckpt export "$WORK/stopped" --format safetensors "$WORK/export/model.safetensors" >"$WORK/export.log" 2>&1 ||
  { cat "$WORK/export.log"; fail "ckpt export failed"; }
"$RM" ckpt export "$WORK/stopped" --format llmc "$WORK/export/model.bin" >"$WORK/export-llmc.log" 2>&1 ||
  { cat "$WORK/export-llmc.log"; fail "ckpt export --format llmc failed"; }
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
# the same weights as llm.c's model file: header, order, and layer 0's
# c_attn equal to the safetensors one transposed
import array
llmc = open(f"{d}/model.bin", "rb").read()
h = struct.unpack("<256i", llmc[:1024])
Vp = 320
assert h[:8] == (20240326, 3, T, V, L, 2, C, Vp), h[:8]
f = array.array("f")
f.frombytes(llmc[1024:])
n_params = Vp * C + T * C + L * (2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C) + 2 * C
assert len(f) == n_params, (len(f), n_params)
def st(name):
    e = header[name]
    a = array.array("f")
    a.frombytes(raw[8 + n + e["data_offsets"][0]: 8 + n + e["data_offsets"][1]])
    return a
wte = st("transformer.wte.weight")
assert list(f[: V * C]) == list(wte), "wte differs"
assert all(x == 0 for x in f[V * C: Vp * C]), "padding rows of wte are not 0"
qkv_at = Vp * C + T * C + 2 * L * C  # after wte, wpe, ln1w and ln1b of every layer
cattn = st("transformer.h.0.attn.c_attn.weight")  # [C, 3C]
for o in range(3 * C):
    for i in range(C):
        assert f[qkv_at + o * C + i] == cattn[i * 3 * C + o], (o, i)
print("export: ok,", len(t), "tensors; llm.c file matches")
PY
echo "gpt resume: ok (stopped and resumed at step $from, and restarted after a killed worker; weights $a all ways; sampling and export checked)"
