# ckpt list / export: the exported safetensors file holds every layer with
# the right shape, its data are the final weights (the digest recorded in
# the file equals the run's weights_digest), and a reader that knows only
# the safetensors format loads it. And every finished run's newest
# checkpoint is its last step, periodic checkpoints or not.
source "$(dirname "$0")/lib.sh"
dir=$WORK/run
run_job "$dir" >"$WORK/run.log" 2>&1 || { cat "$WORK/run.log"; fail "run failed"; }
"$RM" ckpt list "$dir" | grep -q "step-00000240 .*(latest)" || fail "ckpt list does not show the latest checkpoint"
"$RM" ckpt export "$dir" --step 240 "$WORK/w.safetensors" >"$WORK/export.log" || fail "export failed"
python3 - "$WORK/w.safetensors" "$(digest_of "$dir")" <<'PY'
import json, struct, sys
path, digest = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n])
meta = header.pop("__metadata__")
assert meta["weights_digest"] == digest, (meta, digest)
assert meta["step"] == "240"
want = {"layers.0.weight": [128, 784], "layers.0.bias": [128], "layers.1.weight": [10, 128], "layers.1.bias": [10]}
assert {k: v["shape"] for k, v in header.items()} == want, header
end = 0
for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    assert t["dtype"] == "F32"
    b, e = t["data_offsets"]
    count = 1
    for d in t["shape"]:
        count *= d
    assert b == end and e - b == 4 * count, (name, b, e)
    end = e
assert 8 + n + end == len(data), "data must fill the file exactly"
values = struct.unpack("<%df" % (128 * 784), data[8 + n + header["layers.0.weight"]["data_offsets"][0]:][:4 * 128 * 784])
assert all(v == v for v in values) and any(v != 0 for v in values)
print("safetensors ok:", sorted(header))
PY
if "$RM" ckpt export "$dir" --step 7 "$WORK/x.safetensors" 2>"$WORK/missing.log"; then fail "exporting a missing step must fail"; fi
grep -q "step-00000007" "$WORK/missing.log" || fail "the missing step is not named"

# Every finished run leaves its model: the last step is checkpointed even
# where the periodic checkpoints do not fall on it (every 40 steps, 130
# steps: 80, 120 and 130 kept), and with periodic checkpoints off; `ckpt
# export` without --step takes it, and its weights are the run's.
final_model() { # final_model NAME STEPS [options]: the run's newest checkpoint is its last step
  local name=$1 steps=$2; shift 2
  local d=$WORK/$name
  run_job "$d" --set train.steps="$steps" "$@" >"$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; fail "$name: run failed"; }
  local last
  last=$(printf 'step-%08d' "$steps")
  [ "$(cat "$d/checkpoints/latest")" = "$last" ] || { ls "$d/checkpoints"; fail "$name: latest is not $last"; }
  [ "$(ls -d "$d"/checkpoints/step-* | tail -1)" = "$d/checkpoints/$last" ] || fail "$name: $last is not the newest"
  "$RM" ckpt export "$d" "$WORK/$name.safetensors" >"$WORK/$name.export.log" 2>&1 ||
    { cat "$WORK/$name.export.log"; fail "$name: ckpt export without --step failed"; }
  grep -q "from step $steps (weights $(digest_of "$d"))" "$WORK/$name.export.log" ||
    { cat "$WORK/$name.export.log"; fail "$name: the export is not the final weights $(digest_of "$d")"; }
  echo "$name: $(ls "$d/checkpoints" | tr '\n' ' ')-> $(cat "$WORK/$name.export.log")"
}
final_model off-grid 130
[ "$(ls -d "$WORK"/off-grid/checkpoints/step-* | wc -l)" = 3 ] || fail "off-grid: checkpoint.keep 3 not applied"
final_model periodic-off 30 --set checkpoint.every_steps=0
[ "$(ls -d "$WORK"/periodic-off/checkpoints/step-* | wc -l)" = 1 ] || fail "periodic-off: expected the final checkpoint only"
echo "export: ok"
