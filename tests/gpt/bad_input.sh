# Bad GPT jobs and damaged token data get a clear error naming the key,
# the file or the shard, and nothing runs (or the run stops saying why).
source "$(dirname "$0")/lib.sh"
refused() { # refused NAME TEXT ringmaster-args...: exits non-zero and says TEXT
  local name=$1 text=$2
  shift 2
  if "$RM" "$@" >"$WORK/$name.log" 2>&1; then
    cat "$WORK/$name.log"
    fail "$name: was accepted"
  fi
  expect_in "$WORK/$name.log" "$text"
}
sed 's/heads: 2/heads: 3/' "$WORK/job.yaml" >"$WORK/heads.yaml"
refused heads "heads.yaml:1:" validate "$WORK/heads.yaml"
expect_in "$WORK/heads.log" "model.dim 32 does not divide into 3 heads"
# bf16 products are the GPU backend's: refused on the CPU backend, by key
refused cpu_bf16 "train.precision bf16 needs launch.backend gpu or auto" validate "$WORK/job.yaml" \
  --set launch.backend=cpu --set train.precision=bf16
# the GPU backend takes the GPT in every precision (validation needs no device)
for p in fp32 tf32 bf16; do
  "$RM" validate "$WORK/job.yaml" --set launch.backend=gpu --set train.precision=$p >"$WORK/gpu_$p.log" 2>&1 ||
    { cat "$WORK/gpu_$p.log"; fail "gpt on launch.backend gpu, train.precision $p: refused"; }
done
# the fused attention is the GPU's: refused on the CPU backend, by key
refused cpu_fused "train.attention fused needs launch.backend gpu or auto" validate "$WORK/job.yaml" \
  --set launch.backend=cpu --set train.attention=fused
"$RM" validate "$WORK/job.yaml" --set launch.backend=gpu --set train.attention=fused >"$WORK/gpu_fused.log" 2>&1 ||
  { cat "$WORK/gpu_fused.log"; fail "gpt on launch.backend gpu, train.attention fused: refused"; }
refused mlp_on_tokens "holds token streams (model.type: gpt trains on them)" validate "$WORK/job.yaml" \
  --set model.type=mlp
refused long_context "model.context" validate "$WORK/job.yaml" --set model.context=1000000
refused accum "train.grad_accum" validate "$WORK/job.yaml" --set train.grad_accum=5

# a damaged shard is named when the loader first reaches it
cp -r "$DATA" "$WORK/data"
shard=$(ls "$WORK/data/train"/*.rms | head -1)
printf 'XX' | dd of="$shard" bs=1 seek=200 conv=notrunc 2>/dev/null
refused corrupt "$(basename "$shard")" run "$WORK/job.yaml" --set data.dir="$WORK/data" --run-dir "$WORK/corrupt"
# a truncated one is refused when it is opened
cp -r "$DATA" "$WORK/data2"
shard=$(ls "$WORK/data2/train"/*.rms | head -1)
truncate -s -100 "$shard"
refused truncated "$(basename "$shard")" run "$WORK/job.yaml" --set data.dir="$WORK/data2" --run-dir "$WORK/truncated"
echo "gpt bad input: ok"
