# A model from a shared library: the example under examples/ is built by
# its own Makefile against the header `cmake --install` puts in a prefix,
# trained on 2 workers with checkpoints, stopped and resumed to the
# uninterrupted weights; another build of the library cannot resume the
# run; a missing library, another ABI version and a device the library
# lacks are refused by name.
source "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
command -v make >/dev/null && command -v cc >/dev/null || { echo "SKIP: no make or cc"; exit 77; }
cmake --install "$BIN/.." --prefix "$WORK/prefix" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; fail "install"; }
[ -f "$WORK/prefix/include/ringmaster_model.h" ] || fail "the model header was not installed"
make -s -C "$SRC/examples/softmax-regression" PREFIX="$WORK/prefix" OUT="$WORK" >"$WORK/make.log" 2>&1 ||
  { cat "$WORK/make.log"; fail "the example did not build against the installed header"; }
lib=$WORK/libsoftmax_regression.so
write_job job.yaml
plugin=(--set model.type=plugin --set model.library="$lib" --set train.steps=200 --set checkpoint.every_steps=50
        --set train.lr=0.01)
"$RINGMASTER" validate job.yaml "${plugin[@]}" >validate.log 2>&1 || { cat validate.log; fail "validate"; }
"$RINGMASTER" run job.yaml --run-dir "$WORK/straight" "${plugin[@]}" >straight.log 2>&1 ||
  { cat straight.log; fail "the plugin run failed"; }
expect_in straight.log "plugin softmax-regression, 7850 parameters in 2 tensors"
"$PYTHON" - "$WORK/straight/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["test_accuracy"] > 0.7, s["test_accuracy"]
print("softmax regression on 2 workers: test accuracy", s["test_accuracy"])
PY
# stopped mid-run and resumed: the uninterrupted run's weights
"$RINGMASTER" run job.yaml --run-dir "$WORK/stopped" "${plugin[@]}" >first.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -d "$WORK/stopped/checkpoints/step-00000050" ] && break
  sleep 0.05
done
kill -USR1 "$pid"
set +e
wait "$pid"
status=$?
set -e
[ "$status" -eq 75 ] || { cat first.log; fail "the stopped plugin run exited $status, not 75"; }
# another build of the library is another model: the run does not resume with it
mkdir -p "$WORK/other"
make -s -C "$SRC/examples/softmax-regression" PREFIX="$WORK/prefix" OUT="$WORK/other" CFLAGS="-O0" >/dev/null
cmp -s "$lib" "$WORK/other/libsoftmax_regression.so" && fail "the -O0 build is the same file"
if "$RINGMASTER" run job.yaml --run-dir "$WORK/stopped" "${plugin[@]}" \
  --set model.library="$WORK/other/libsoftmax_regression.so" >other.log 2>&1; then
  fail "a run resumed with another build of its model library"
fi
expect_in other.log "was made by a different model, data or train config"
"$RINGMASTER" run job.yaml --run-dir "$WORK/stopped" "${plugin[@]}" >resume.log 2>&1 || { cat resume.log; fail "resume"; }
a=$(sed -n 's/.*"weights_digest": "\([0-9a-f]*\)".*/\1/p' "$WORK/straight/summary.json")
b=$(sed -n 's/.*"weights_digest": "\([0-9a-f]*\)".*/\1/p' "$WORK/stopped/summary.json")
[ -n "$a" ] && [ "$a" = "$b" ] || fail "resumed plugin run ended with weights $b, the uninterrupted one with $a"
# refusals
if "$RINGMASTER" validate job.yaml "${plugin[@]}" --set model.library="$WORK/nope.so" >missing.log 2>&1; then
  fail "a missing library was accepted"
fi
expect_in missing.log "model.library $WORK/nope.so: cannot load it"
sed 's/\.abi = RINGMASTER_MODEL_ABI/.abi = 99/' "$SRC/examples/softmax-regression/model.c" >"$WORK/abi99.c"
cc -shared -fPIC -I"$WORK/prefix/include" -o "$WORK/abi99.so" "$WORK/abi99.c" -lm
if "$RINGMASTER" validate job.yaml "${plugin[@]}" --set model.library="$WORK/abi99.so" >abi.log 2>&1; then
  fail "a library of another ABI was accepted"
fi
expect_in abi.log "built against model ABI 99; this ringmaster speaks ABI 1"
if "$RINGMASTER" validate job.yaml "${plugin[@]}" --set launch.backend=gpu >gpu.log 2>&1; then
  fail "the plugin was accepted on the gpu backend"
fi
expect_in gpu.log "runs on: cpu; use launch.backend cpu"
echo "plugin: ok (built against the installed header, trained, resumed to weights $a, refusals named)"
