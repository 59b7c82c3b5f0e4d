# `ringmaster validate` counts what each worker of a GPT job will hold,
# part by part: on the CPU backend the count is what a run then measures
# (summary.json memory_bytes_per_worker, the heap around the setup; MPI
# transport, where every worker holds all its state), within 10%; on the
# GPU backend (counted without a device) recompute and the fused attention
# count less, and --device-memory says whether the job fits (exit 3 when
# not) and the most layers of this width that do.
source "$(dirname "$0")/lib.sh"

# counted_mib ARGS...: validate's total, in MiB
counted_mib() {
  "$RM" validate "$WORK/job.yaml" "$@" >"$WORK/validate.log" 2>&1 || { cat "$WORK/validate.log" >&2; fail "validate $*"; }
  local line
  line=$(grep "^memory per worker on the" "$WORK/validate.log") || { cat "$WORK/validate.log" >&2; fail "no memory line: $*"; }
  echo "$line" | awk '{ v = $8; if ($9 == "GiB") v *= 1024; printf "%.3f", v }'
}

mid=(--set model.context=128 --set model.dim=128 --set model.heads=4)
for shape in tiny mid; do
  args=(--set launch.backend=cpu --set launch.cpu_reduce=mpi --set train.steps=2 --set train.warmup_steps=1)
  [ $shape = mid ] && args+=("${mid[@]}")
  counted=$(counted_mib "${args[@]}")
  grep -q "memory per worker on the CPU backend: .* activations .* (6 sequences per micro-step, fp32, recompute 0)" \
    "$WORK/validate.log" || { cat "$WORK/validate.log"; fail "$shape: the CPU line"; }
  run "$shape" "${args[@]}"
  measured=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["memory_bytes_per_worker"] / 2**20)' \
    "$WORK/$shape/summary.json")
  awk -v c="$counted" -v m="$measured" 'BEGIN { exit !(m > 0.9 * c && m < 1.1 * c) }' ||
    fail "$shape: counted $counted MiB per worker, the run measured $measured MiB"
  echo "$shape: counted $counted MiB per worker, measured $measured MiB"
done

# the GPU backend, counted without a device
gpu=(--set launch.backend=gpu --set train.precision=bf16)
simple=$(counted_mib "${gpu[@]}" "${mid[@]}")
fused=$(counted_mib "${gpu[@]}" "${mid[@]}" --set train.attention=fused)
fused2=$(counted_mib "${gpu[@]}" "${mid[@]}" --set train.attention=fused --set train.recompute=2)
zero=$(counted_mib "${gpu[@]}" "${mid[@]}" --set train.attention=fused --set train.recompute=2 --set train.zero=1)
awk -v a="$simple" -v b="$fused" -v c="$fused2" -v d="$zero" 'BEGIN { exit !(a > b && b > c && c > d) }' ||
  fail "GPU: simple $simple, fused $fused, fused + recompute 2 $fused2, + ZeRO-1 $zero MiB: each should count less"
grep -q "optimizer state [0-9.]* (ZeRO-1 slice)" "$WORK/validate.log" || fail "ZeRO-1's slice is not named"

set +e
"$RM" validate "$WORK/job.yaml" "${gpu[@]}" "${mid[@]}" --device-memory 1M >"$WORK/small.log" 2>&1
status=$?
set -e
[ $status -eq 3 ] || { cat "$WORK/small.log"; fail "a job that does not fit: exit $status, not 3"; }
grep -q "^does not fit in" "$WORK/small.log" || fail "no 'does not fit'"
"$RM" validate "$WORK/job.yaml" "${gpu[@]}" "${mid[@]}" --device-memory 80G >"$WORK/big.log" 2>&1 ||
  { cat "$WORK/big.log"; fail "a job that fits: refused"; }
grep -q "^fits in 79.00 GiB (80.00 GiB less 1 GiB" "$WORK/big.log" || { cat "$WORK/big.log"; fail "no 'fits in'"; }
grep -q "^the most layers of dim 128, context 128 that fit: 128, the most ringmaster takes" "$WORK/big.log" ||
  { cat "$WORK/big.log"; fail "the most layers"; }
# the most layers that fit in 1300 MiB less the 1 GiB kept back: that many
# count at most 276 MiB, one more over
"$RM" validate "$WORK/job.yaml" "${gpu[@]}" "${mid[@]}" --device-memory 1300M >"$WORK/1300m.log" 2>&1 || true
most=$(sed -n 's/^the most layers of dim 128, context 128 that fit: \([0-9]*\).*/\1/p' "$WORK/1300m.log")
[ -n "$most" ] && [ "$most" -ge 2 ] && [ "$most" -lt 128 ] || { cat "$WORK/1300m.log"; fail "the most layers in 1300M: '$most'"; }
at=$(counted_mib "${gpu[@]}" "${mid[@]}" --set model.layers="$most")
over=$(counted_mib "${gpu[@]}" "${mid[@]}" --set model.layers=$((most + 1)))
awk -v a="$at" -v o="$over" 'BEGIN { exit !(a <= 276 && o > 276) }' ||
  fail "$most layers count $at MiB, $((most + 1)) count $over MiB: the bound is 276 MiB"

set +e
"$RM" run "$WORK/job.yaml" --device-memory 80G >"$WORK/run.log" 2>&1
status=$?
set -e
[ $status -eq 2 ] && grep -q "device-memory is an option of ringmaster validate" "$WORK/run.log" ||
  { cat "$WORK/run.log"; fail "run --device-memory: exit $status"; }
echo "memory_plan: ok (GPU counts: simple $simple, fused $fused, + recompute 2 $fused2, + ZeRO-1 $zero MiB; $most layers in 1300M)"
