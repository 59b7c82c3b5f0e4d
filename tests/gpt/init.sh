# model.init: a run started from exported weights (Hugging Face safetensors
# as ringmaster writes it, the same without the "transformer." prefix and
# with GPT-2's mask buffers and lm_head, or llm.c's model file) holds
# exactly those weights; mismatches are refused naming the tensor.
source "$(dirname "$0")/lib.sh"
run src --set train.steps=60 --set checkpoint.every_steps=60
mkdir -p "$WORK/x"
"$RM" ckpt export "$WORK/src" "$WORK/x/a.safetensors" >"$WORK/x.log" 2>&1 || { cat "$WORK/x.log"; fail "export"; }
"$RM" ckpt export "$WORK/src" --format llmc "$WORK/x/a.bin" >>"$WORK/x.log" 2>&1 || { cat "$WORK/x.log"; fail "export"; }
want=$(sed -n 's/.*(weights \([0-9a-f]*\)).*/\1/p' "$WORK/x.log" | head -1)
[ -n "$want" ] || { cat "$WORK/x.log"; fail "no digest from the export"; }
# the Hugging Face file as GPT2Model saves it: no prefix, attention-mask
# buffers, and an lm_head equal to the embedding; and one whose lm_head differs
"$PYTHON" - "$WORK/x" <<'PY'
import json, struct, sys
d = sys.argv[1]
raw = open(f"{d}/a.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
def write(path, tensors):
    h, blob = {}, b""
    for name, entry in tensors.items():
        shape, payload = entry[:2]
        dtype = entry[2] if len(entry) > 2 else "F32"
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(payload)]}
        blob += payload
    text = json.dumps(h).encode()
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + blob)
t = {}
for name, e in header.items():
    if name == "__metadata__":
        continue
    t[name.replace("transformer.", "", 1)] = (e["shape"], data[e["data_offsets"][0]:e["data_offsets"][1]])
for l in range(2):
    # GPT-2's checkpoints carry the causal mask as uint8, the masked value as F32
    t[f"h.{l}.attn.bias"] = ([1, 1, 32, 32], bytes([1] * 1024), "U8")
    t[f"h.{l}.attn.masked_bias"] = ([], struct.pack("<f", -1e4))
t["lm_head.weight"] = t["wte.weight"]
write(f"{d}/hf.safetensors", t)
shape, wte = t["wte.weight"][:2]
t["lm_head.weight"] = (shape, bytes([wte[0] ^ 1]) + wte[1:])
write(f"{d}/bad_head.safetensors", t)
PY
for f in a.safetensors a.bin hf.safetensors; do
  run "from-$f" --set model.init="$WORK/x/$f" --set train.steps=1 --set train.lr=1e-30 --set train.warmup_steps=0 \
    --set 'data.eval_split=""'
  got=$(digest_of "from-$f")
  [ "$got" = "$want" ] || fail "started from $f, the weights are $got, not the exported $want"
done
refused() { # refused NAME TEXT run-options...
  local name=$1 text=$2
  shift 2
  if "$RM" run "$WORK/job.yaml" --run-dir "$WORK/$name" --set train.steps=1 --set train.warmup_steps=0 "$@" \
    >"$WORK/$name.log" 2>&1; then
    fail "$name: was accepted"
  fi
  expect_in "$WORK/$name.log" "$text"
}
refused head "lm_head.weight differs from transformer.wte.weight" --set model.init="$WORK/x/bad_head.safetensors"
refused dim "tensor transformer.wte.weight has shape [257, 32], the model needs [257, 64]" \
  --set model.init="$WORK/x/a.safetensors" --set model.dim=64
refused llmc_dim "its dim (C) is 32, the model's is 64" --set model.init="$WORK/x/a.bin" --set model.dim=64
refused missing "model.init" --set model.init="$WORK/x/nope.safetensors"
expect_in "$WORK/missing.log" "cannot read $WORK/x/nope.safetensors"
echo "gpt init: ok (safetensors, prefix-less Hugging Face layout and llm.c file all give weights $want)"
