# ckpt list / export: the exported safetensors file holds every layer with
# the right shape, its data are the final weights (the digest recorded in
# the file equals the run's weights_digest), and a reader that knows only
# the safetensors format loads it.
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
echo "export: ok"
