#!/usr/bin/env bash
# The GPU backend, checked on a machine with a CUDA GPU, in one command:
#
#   scripts/gpu-check.sh [--quick] [--cpu-reference] [--gpt-only]
#
#   1. builds ringmaster with the GPU backend (RINGMASTER_CUDA=ON) into
#      BUILD_DIR (default build-gpu), for this GPU's architecture;
#   2. runs the GPU-against-CPU agreement tests (tests/test_gpu.c: every
#      kernel, the products in fp32/tf32/bf16, training steps, checkpoints
#      across backends) and, where MPI runs, the multi-rank tests of the
#      all-reduce logic;
#   3. trains configs/fashion_mnist.yaml on one GPU (--workers 1,
#      launch.backend=gpu) and checks the test accuracy reaches the CPU
#      backend's (MIN_ACCURACY, default 0.89; --cpu-reference also trains
#      it on the CPU backend and prints both);
#   3b. trains it for one epoch on one GPU with train.zero 1 and with 0:
#      ZeRO-1 on one worker is plain data parallelism, so both end with the
#      same weights (weights_digest) and the same optimizer state bytes;
#   4. unless --quick: measures the GPU's cuBLAS GEMM rate, trains
#      bench/mlp-8192-gpu.yaml (784-8192-8192-10, global batch 4096) with
#      ringmaster in bf16 and tf32 and the same job in PyTorch on the same
#      GPU (bench/torch_gpu.py), and prints samples/s, the ratio and MFU
#      against the measured GEMM rate;
#   5. GPT on one GPU (skipped, not failed, while ringmaster refuses
#      model.type gpt on the GPU backend):
#   5a. bench/gpt-cpu.yaml's byte-level GPT (4 layers, dim 256, context 256)
#      on the Brown corpus for GPT_CHECK_STEPS steps (default 40) in fp32 on
#      one GPU with each attention path (train.attention simple, fused) and
#      on one CPU worker: the losses at step 1 and at the last step, and the
#      validation loss, must agree (relative GPT_LOSS_RTOL, default 1e-2;
#      step 1, same weights and batch, within 1e-3);
#   5b. unless --quick: GPT-2 124M (bench/gpt2-124m-gpu.yaml: bf16, or tf32
#      with a note where `ringmaster validate` refuses bf16) against
#      bench/torch_gpt_gpu.py (SDPA, fused AdamW, autocast, torch.compile
#      when it compiles in time) on the same GPU: steady-state tokens/s
#      (ringmaster: the steps after the fifth in metrics.jsonl), the ratio,
#      MFU as llm.c counts it against the datasheet peak and against the
#      GEMM rate measured at 8192^3, the attention path (fused where 5a
#      found it agreeing with the CPU, else simple), peak device memory;
#   5c. with 5b: `ringmaster doctor` on the 124M job, into the run's
#      directory, its predicted step against the run's;
#   5d. with time left: the same job for two steps with train.recompute 1
#      and 2, the device memory each takes at start-up beside 5b's and
#      beside what `ringmaster validate` counts for each;
#   5e. with time left: the most layers of width 1600 (context 1024, one
#      sequence a step, recompute 2) that `ringmaster validate
#      --device-memory` counts into this GPU, trained for two steps: the
#      largest shape, and its memory against the count.
#   The speed figures of 5b and 5c are reported, not checked.
#
# Time on an H200 (16 cores), what each step should take; the whole stays
# within GPU_CHECK_BUDGET_S (default 480 s): each GPT step gets at most the
# time left, and one that cannot start in time is skipped with a note.
#   1 build ~90 s | 2 tests ~60 s | 3, 3b Fashion-MNIST ~50 s |
#   4 GEMM + MLP bench ~70 s | 5a ~60 s (three runs) | 5b, 5c: GEMM at the GPT's shapes
#   ~5 s, doctor ~25 s, ringmaster 40 steps ~40 s, PyTorch eager ~25 s and
#   compiled ~100 s (its compile gets what is left, at most 180 s).
#   --quick: 1 to 3b and 5a, about 4.5 minutes. --gpt-only: 1 and 5 only
#   (about 5 minutes), for a lease whose time the other steps would take.
#
# Exit status: 0 when every check passes, 1 when one fails, 77 when there
# is no usable GPU: then it still builds the GPU backend (for CUDA_ARCHS,
# default 90) and dry-runs the GPT benchmark's config and PyTorch peer, so
# a machine without a GPU checks what it can. Everything lands in a fresh
# directory, printed at the start; the summary is its summary.txt.
#
# A GPU machine without network may lack MPI, libyaml, OpenBLAS, xxhash,
# Check, pkg-config or the datasets: prepare them once with
# scripts/gpu-carry.sh on a Debian machine, bring the folder along
# (RINGMASTER_CARRY, default .gpu-carry), and this script unpacks what is
# missing under /opt/ringmaster-carry (never into /), the Brown token
# datasets (brown.tar.gz) into BUILD_DIR.
#
# Every step runs under a timeout (RUN_TIMEOUT_S for each training run,
# default 300), so a hang costs minutes, not the machine's whole lease.
#
# Environment: BUILD_DIR, RINGMASTER_CARRY, FASHION_MNIST_DIR, GPT_DATA_DIR
# (a folder holding brown/ and brown-gpt2/; default data/, else the carry),
# PYTHON (a python3 with torch; default: the first one on PATH that has
# it), CUDA_ARCHS (default: the GPU's compute capability), MIN_ACCURACY,
# RINGMASTER_NCCL_ROOT, GPU_CHECK_BUDGET_S, GPT_CHECK_STEPS, GPT_LOSS_RTOL.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0 cpu_reference=0 gpt_only=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    --gpt-only) gpt_only=1 ;;
    --cpu-reference) cpu_reference=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu-check.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

build=${BUILD_DIR:-build-gpu}
carry=${RINGMASTER_CARRY:-.gpu-carry}
min_accuracy=${MIN_ACCURACY:-0.89}
budget_s=${GPU_CHECK_BUDGET_S:-480}
out=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-gpu-check.XXXXXX")
summary=$out/summary.txt
failures=0
say() { echo "== $*"; }
note() { echo "$*" | tee -a "$summary"; }
fail() { note "FAIL: $*"; failures=$((failures + 1)); }
die() { echo "gpu-check.sh: $*" >&2; exit 1; }
say "results in $out"

# --- the GPU --------------------------------------------------------------
if command -v nvidia-smi >/dev/null; then
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1) || gpu=""
else
  gpu=""
fi
have_gpu=1
if [ -z "$gpu" ]; then
  have_gpu=0
  note "no GPU visible (nvidia-smi finds none): building the GPU backend and dry-running the GPT benchmark, then exit 77"
else
  note "GPU: $gpu"
fi
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ ! -x "$nvcc" ]; then
  [ $have_gpu = 1 ] || { echo "gpu-check.sh: skipped: no GPU and no nvcc"; exit 77; }
  die "no nvcc on PATH or at /usr/local/cuda/bin/nvcc"
fi
note "nvcc: $("$nvcc" --version | tail -n 2 | head -n 1)"

# --- dependencies: the machine's, else the carried .debs ------------------
missing=()
[ "${GPU_CHECK_USE_CARRY:-0}" = 0 ] || missing+=(forced) # to try the carried path on a complete machine
command -v mpicc >/dev/null || missing+=(mpi)
if command -v pkg-config >/dev/null; then
  for m in yaml-0.1 openblas libxxhash check libsodium libmicrohttpd; do
    pkg-config --exists "$m" || missing+=("$m")
  done
else
  missing+=(pkg-config)
fi
[ -f /usr/include/zlib.h ] || missing+=(zlib)
mpirun_cmd=$(command -v mpirun || true)
cmake_extra=()
if [ ${#missing[@]} -gt 0 ]; then
  [ -d "$carry/debs" ] || die "this machine lacks ${missing[*]}: make $carry with scripts/gpu-carry.sh and bring it along"
  say "unpacking the carried packages for: ${missing[*]}"
  sysroot=/opt/ringmaster-carry
  mkdir -p $sysroot/.unpacked
  for deb in "$carry"/debs/*.deb; do
    # each package once, so a folder carried later with more adds them
    stamp=$sysroot/.unpacked/$(basename "$deb")
    [ -e "$stamp" ] && continue
    {
      if command -v dpkg >/dev/null; then
        dpkg -x "$deb" $sysroot
      else # a .deb is an ar archive around data.tar.*
        tmp=$(mktemp -d)
        (cd "$tmp" && ar x "$root/$deb" && tar -xf data.tar.* -C $sysroot)
        rm -rf "$tmp"
      fi
    } && touch "$stamp"
  done
  multiarch=$sysroot/usr/lib/x86_64-linux-gnu
  # What Debian's alternatives would link (dpkg -x runs no maintainer scripts).
  ln -sf openblas-pthread/libopenblas.so.0 "$multiarch/libopenblas.so.0"
  ln -sf openblas-pthread/libopenblas.so "$multiarch/libopenblas.so"
  # libmicrohttpd's .pc names gnutls for static links only; the shared
  # link needs no gnutls headers, so do not ask pkg-config for them
  [ ! -f "$multiarch/pkgconfig/libmicrohttpd.pc" ] || sed -i '/^Requires.private:/d' "$multiarch/pkgconfig/libmicrohttpd.pc"
  export PATH=$sysroot/usr/bin:$PATH
  export LD_LIBRARY_PATH=$multiarch:$multiarch/openblas-pthread:$multiarch/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PKG_CONFIG_SYSROOT_DIR=$sysroot
  export PKG_CONFIG_PATH=$multiarch/pkgconfig:$multiarch/openblas-pthread/pkgconfig:$sysroot/usr/share/pkgconfig
  export PKG_CONFIG_LIBDIR=$PKG_CONFIG_PATH
  export OPAL_PREFIX=$sysroot/usr OPAL_LIBDIR=$multiarch/openmpi/lib
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  command -v pkg-config >/dev/null || ln -sf pkgconf $sysroot/usr/bin/pkg-config
  cmake_extra+=(-DZLIB_ROOT=$sysroot/usr -DCMAKE_PREFIX_PATH=$sysroot/usr)
  if [[ " ${missing[*]} " == *" mpi "* || " ${missing[*]} " == *" forced "* ]]; then
    cmake_extra+=(-DMPI_C_COMPILER=$sysroot/usr/bin/mpicc.openmpi -DMPIEXEC_EXECUTABLE=$sysroot/usr/bin/orterun)
    mpirun_cmd=$sysroot/usr/bin/orterun
  fi
fi
[ -n "$mpirun_cmd" ] || die "no mpirun"

# NCCL: the toolkit's, else the one inside PyTorch's environment.
python=${PYTHON:-}
if [ -z "$python" ]; then
  for p in python3 /usr/bin/python3 python; do
    if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then python=$(command -v "$p"); break; fi
  done
fi
nccl_root=${RINGMASTER_NCCL_ROOT:-}
if [ -z "$nccl_root" ] && [ ! -f /usr/local/cuda/include/nccl.h ] && [ -n "$python" ]; then
  nccl_root=$("$python" -c 'import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)
fi
if [ -n "$nccl_root" ]; then
  cmake_extra+=(-DRINGMASTER_NCCL_ROOT="$nccl_root")
  export LD_LIBRARY_PATH=$nccl_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  note "NCCL: $nccl_root"
fi

# --- 1. build -------------------------------------------------------------
# This GPU's architecture (e.g. 9.0 -> 90), for a short build.
if [ $have_gpu = 1 ]; then
  archs=${CUDA_ARCHS:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ')}
  archs=${archs:-native}
else
  archs=${CUDA_ARCHS:-90} # H100/H200: the machines this check is run on
fi
say "building into $build"
if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DRINGMASTER_CUDA=ON -DRINGMASTER_WERROR="${WERROR:-OFF}" \
     -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="$archs" "${cmake_extra[@]}" \
     >"$out/configure.log" 2>&1; then
  tail -n 30 "$out/configure.log" >&2
  die "configure failed (log: $out/configure.log)"
fi
grep "ringmaster: GPU backend" "$out/configure.log" | tee -a "$summary"
if ! cmake --build "$build" -j "$(nproc)" >"$out/build.log" 2>&1; then
  grep -E "error|Error" "$out/build.log" | head -n 30 >&2
  die "build failed (log: $out/build.log)"
fi
bin=$build/bin

# --- the GPT checks' datasets and helpers ----------------------------------
# Step 5 and the dry run without a GPU share these.
cap_s() { # WANTED: WANTED seconds, or what is left of the budget less a margin
  local left=$((budget_s - SECONDS - 10))
  if [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}
# The Brown token datasets: GPT_DATA_DIR, the repository's data/, else the carry.
gpt_data=${GPT_DATA_DIR:-}
if [ -z "$gpt_data" ]; then
  if [ -f data/brown/train/index.rmi ] && [ -f data/brown-gpt2/train/index.rmi ]; then
    gpt_data=data
  elif [ -f "$carry/brown.tar.gz" ]; then
    gpt_data=$build/gpu-check-data-gpt
    if [ ! -f "$gpt_data/brown-gpt2/train/index.rmi" ]; then
      mkdir -p "$gpt_data" && tar -xzf "$carry/brown.tar.gz" -C "$gpt_data"
    fi
  fi
fi
gpt_data_missing=""
for d in brown brown-gpt2; do
  [ -n "$gpt_data" ] && [ -f "$gpt_data/$d/train/index.rmi" ] || gpt_data_missing+=" $d"
done
gpt_sets=(--set launch.mpirun="$mpirun_cmd")
gpt_config=bench/gpt2-124m-gpu.yaml
# ringmaster validate CONFIG ARGS...: its verdict on stdout, status as validate's
rm_validate() {
  "$bin/ringmaster" validate "$@" "${gpt_sets[@]}" 2>&1 | tail -n 3 | tr '\n' ' '
  return "${PIPESTATUS[0]}"
}
# counted_mib CONFIG ARGS...: the device memory per worker ringmaster
# validate counts for the job (common/gpt_memory.c), in MiB; empty if none
counted_mib() {
  "$bin/ringmaster" validate "$@" "${gpt_sets[@]}" 2>/dev/null |
    sed -n 's/^memory per worker on the GPU backend: \([0-9.]*\) GiB.*/\1/p' |
    awk 'NF { printf "%.0f", $1 * 1024 }'
}
# Sets precision, the one the 124M job runs in: bf16, or tf32 where this
# ringmaster refuses bf16 for it (the GPU GPT came in fp32/tf32 first); or
# empty, with the reason in gpt_refusal, when it refuses the job on the GPU.
gpt_precision() {
  local verdict
  precision="" gpt_refusal=""
  if ! verdict=$(rm_validate "$gpt_config" --set data.dir="$gpt_data/brown-gpt2" --set train.precision=tf32); then
    gpt_refusal=$verdict
  elif verdict=$(rm_validate "$gpt_config" --set data.dir="$gpt_data/brown-gpt2" --set train.precision=bf16); then
    precision=bf16
  else
    note "note: ringmaster validate refuses train.precision bf16 for the GPT ($verdict): the 124M job runs in tf32"
    precision=tf32
  fi
}

# --- no GPU: what can be checked without one --------------------------------
if [ $have_gpu = 0 ]; then
  say "no GPU: the GPT benchmark's config and its PyTorch peer, dry"
  if [ -n "$gpt_data_missing" ]; then
    note "GPT datasets missing:$gpt_data_missing (scripts/prepare-brown.sh --gpt2, or scripts/gpu-carry.sh)"
  else
    gpt_precision
    if [ -n "$precision" ]; then
      note "ringmaster validate $gpt_config: accepted in $precision"
      for r in 0 1 2; do
        note "GPT-2 124M device memory, train.recompute $r, counted: $(counted_mib "$gpt_config" \
          --set data.dir="$gpt_data/brown-gpt2" --set train.precision="$precision" --set train.attention=fused \
          --set train.recompute=$r) MiB (fused attention)"
      done
    else
      note "ringmaster validate $gpt_config on the GPU backend: refused: $gpt_refusal"
    fi
    if [ -n "$python" ]; then
      "$python" bench/torch_gpt_gpu.py --dry-run --config "$gpt_config" --data "$gpt_data/brown-gpt2" |
        tee "$out/torch-gpt2-dry.json" | cut -c1-400 | tee -a "$summary"
    fi
  fi
  echo "gpu-check.sh: skipped: no GPU visible (nvidia-smi finds none); built the GPU backend in $build"
  exit 77
fi

json_field() { # FILE KEY
  "${python:-python3}" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
run_job() { # NAME CONFIG ARGS...: ringmaster run into $out/NAME (job_data, job_timeout: other data, time)
  local name=$1 config=$2
  shift 2
  if ! timeout -k 10 "${job_timeout:-${RUN_TIMEOUT_S:-300}}" "$bin/ringmaster" run "$config" --run-dir "$out/$name" \
       --set data.dir="${job_data:-$data}" \
       --set launch.mpirun="$mpirun_cmd" "$@" >"$out/$name.log" 2>&1; then
    tail -n 20 "$out/$name.log" >&2
    return 1
  fi
}

# --- 2. agreement tests ---------------------------------------------------
if [ $gpt_only = 0 ]; then
  say "GPU against CPU: $bin/test_gpu"
  set +e
  timeout -k 10 240 "$bin/test_gpu" >"$out/test_gpu.log" 2>&1
  rc=$?
  set -e
  grep -E "^[0-9]+%: Checks" "$out/test_gpu.log" | tee -a "$summary" || true
  case $rc in
    0) note "agreement tests: pass" ;;
    77) fail "test_gpu skipped: $(head -n 1 "$out/test_gpu.log")" ;;
    *) grep -E ":F:|:E:" "$out/test_gpu.log" | head -n 20 | tee -a "$summary"; fail "agreement tests (log: $out/test_gpu.log)" ;;
  esac
  say "multi-rank all-reduce logic under $mpirun_cmd"
  if (cd "$build" && ctest -R "test_grad_sync|test_allreduce" --timeout 120 --output-on-failure >"$out/mpi_tests.log" 2>&1); then
    note "grad_sync and allreduce tests (3 ranks): pass"
  else
    fail "MPI tests (log: $out/mpi_tests.log)"
  fi
fi

# --- data -----------------------------------------------------------------
if [ $gpt_only = 0 ]; then
  src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  [ -f "$src/train-images-idx3-ubyte.gz" ] || src=$carry/fashion-mnist
  [ -f "$src/train-images-idx3-ubyte.gz" ] || die "no Fashion-MNIST IDX files (FASHION_MNIST_DIR, or scripts/gpu-carry.sh)"
  data=$build/gpu-check-data
  for split in train:train t10k:test; do
    prefix=${split%%:*} name=${split##*:}
    [ -f "$data/$name/index.rmi" ] || "$bin/ringmaster" data import-idx --images "$src/$prefix-images-idx3-ubyte.gz" \
      --labels "$src/$prefix-labels-idx1-ubyte.gz" --out "$data/$name" >/dev/null
  done
fi

# --- 3. Fashion-MNIST on one GPU ------------------------------------------
if [ $gpt_only = 0 ]; then
  say "Fashion-MNIST on one GPU"
  if run_job fmnist-gpu configs/fashion_mnist.yaml --workers 1 --set launch.backend=gpu; then
    acc=$(json_field "$out/fmnist-gpu/summary.json" test_accuracy)
    sps=$(json_field "$out/fmnist-gpu/summary.json" samples_per_second)
    note "fashion_mnist.yaml, 1 GPU: test accuracy $acc, $(printf '%.0f' "$sps") samples/s"
    awk -v a="$acc" -v m="$min_accuracy" 'BEGIN { exit !(a >= m) }' || fail "GPU accuracy $acc < $min_accuracy"
  else
    fail "Fashion-MNIST on the GPU backend (log: $out/fmnist-gpu.log)"
  fi
  if [ $cpu_reference = 1 ]; then
    if run_job fmnist-cpu configs/fashion_mnist.yaml --workers 1 --set launch.backend=cpu; then
      note "fashion_mnist.yaml, 1 CPU worker: test accuracy $(json_field "$out/fmnist-cpu/summary.json" test_accuracy)"
    else
      fail "Fashion-MNIST on the CPU backend (log: $out/fmnist-cpu.log)"
    fi
  fi

    # --- 3b. ZeRO-1 on one GPU against zero 0 --------------------------------
  say "ZeRO-1 on one GPU against zero 0 (one epoch each)"
  zero_ok=1
  for z in 0 1; do
    if ! run_job fmnist-zero$z configs/fashion_mnist.yaml --workers 1 --set launch.backend=gpu --set train.epochs=1 \
         --set train.zero=$z; then
      fail "Fashion-MNIST one epoch on the GPU with train.zero $z (log: $out/fmnist-zero$z.log)"
      zero_ok=0
    fi
  done
  if [ $zero_ok = 1 ]; then
    for key in weights_digest optimizer_state_bytes_per_worker final_train_loss test_accuracy; do
      a=$(json_field "$out/fmnist-zero0/summary.json" $key)
      b=$(json_field "$out/fmnist-zero1/summary.json" $key)
      if [ "$a" = "$b" ]; then
        note "train.zero 1 on one GPU: $key $b, the same as zero 0"
      else
        fail "train.zero 1 on one GPU: $key $b, zero 0 $a"
      fi
    done
  fi
fi

# --- 4. the larger MLP against PyTorch -------------------------------------
if [ $quick = 0 ] && [ $gpt_only = 0 ]; then
  say "GEMM rate and the 784-8192-8192-10 MLP against PyTorch"
  dims=784,8192,8192,10
  timeout -k 10 120 "$bin/ringmaster-bench-gemm-gpu" --dims $dims --batch 4096 >"$out/gemm.json" 2>"$out/gemm.log" ||
    die "GEMM benchmark failed (log: $out/gemm.log)"
  note "GEMM rate: $(cat "$out/gemm.json")"
  [ -n "$python" ] || fail "no python3 with torch: no PyTorch baseline"
  for precision in bf16 tf32; do
    if ! run_job bench-$precision bench/mlp-8192-gpu.yaml --set train.precision=$precision; then
      fail "ringmaster bench run in $precision (log: $out/bench-$precision.log)"
      continue
    fi
    rm_sps=$(json_field "$out/bench-$precision/summary.json" samples_per_second)
    torch_sps=""
    if [ -n "$python" ]; then
      if timeout -k 10 300 "$python" bench/torch_gpu.py --config "$out/bench-$precision/config.yaml" --data "$src" \
           --json "$out/torch-$precision.json" >"$out/torch-$precision.log" 2>&1; then
        torch_sps=$(json_field "$out/torch-$precision.json" samples_per_second)
      else
        tail -n 10 "$out/torch-$precision.log" >&2
        fail "PyTorch baseline in $precision (log: $out/torch-$precision.log)"
      fi
    fi
    "${python:-python3}" - "$rm_sps" "${torch_sps:-0}" "$out/gemm.json" "$precision" "$dims" <<'PY' | tee -a "$summary"
import json, sys
rm, torch, gemm, prec, dims = float(sys.argv[1]), float(sys.argv[2]), json.load(open(sys.argv[3])), sys.argv[4], [int(d) for d in sys.argv[5].split(",")]
flops = 6.0 * sum(a * b for a, b in zip(dims[:-1], dims[1:]))
peak = gemm[f"{prec}_tflops"] * 1e12
line = f"{prec}: ringmaster {rm:.0f} samples/s, MFU {rm * flops / peak:.1%} of the measured {prec} GEMM rate ({peak / 1e12:.0f} TFLOP/s)"
if torch > 0:
    line += f"; PyTorch {torch:.0f} samples/s (MFU {torch * flops / peak:.1%}); ratio {rm / torch:.2f}x"
print(line)
PY
    if [ -n "$torch_sps" ] && ! awk -v a="$rm_sps" -v b="$torch_sps" 'BEGIN { exit !(a >= b) }'; then
      fail "$precision: ringmaster is slower than PyTorch on this GPU"
    fi
  done
fi

# --- 5. GPT on one GPU -------------------------------------------------------
say "GPT on one GPU"
precision=""
[ -n "$gpt_data_missing" ] || gpt_precision
if [ -n "$gpt_data_missing" ]; then
  note "SKIP GPT checks: no Brown token datasets:$gpt_data_missing (GPT_DATA_DIR, scripts/prepare-brown.sh --gpt2, or scripts/gpu-carry.sh)"
elif [ -z "$precision" ]; then
  note "SKIP GPT checks: ringmaster refuses the GPT on the GPU backend: $gpt_refusal"
else
  # 5a. the byte-level GPT in fp32 on the GPU and on the CPU: the same job,
  # the same initial weights and batches, so their losses agree to fp32's
  # rounding at step 1 and to its drift over the steps after.
  gpt_steps=${GPT_CHECK_STEPS:-40} # at least 4: a quarter of them warm the lr up
  cpu_threads=$(($(nproc) > 9 ? 8 : ($(nproc) > 1 ? $(nproc) - 1 : 1)))
  # The GPU runs it twice, with each attention path (train.attention).
  tiny_ok=1
  for variant in gpu gpu-fused cpu; do
    args=(--set launch.backend="${variant%-fused}")
    [ "$variant" = cpu ] && args+=(--set launch.threads_per_worker="$cpu_threads")
    [ "$variant" = gpu-fused ] && args+=(--set train.attention=fused)
    t=$(cap_s 120)
    if [ "$t" -lt 20 ]; then
      note "SKIP 5a: ${t}s left of the ${budget_s}s budget"
      tiny_ok=0
      break
    fi
    if ! job_data=$gpt_data/brown job_timeout=$t run_job gpt-tiny-$variant bench/gpt-cpu.yaml --workers 1 \
         "${args[@]}" --set train.precision=fp32 \
         --set train.steps="$gpt_steps" --set train.warmup_steps=$((gpt_steps / 4)) --set train.eval_tokens=65536; then
      fail "bench/gpt-cpu.yaml on one $variant worker (log: $out/gpt-tiny-$variant.log)"
      tiny_ok=0
    fi
  done
  if [ $tiny_ok = 1 ]; then
    "${python:-python3}" - "$out/gpt-tiny-gpu" "$out/gpt-tiny-gpu-fused" "$out/gpt-tiny-cpu" "${GPT_LOSS_RTOL:-1e-2}" <<'PY' | tee -a "$summary" ||
import json, sys
gpu, fused, cpu, rtol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def run(d):
    rows = [json.loads(l) for l in open(f"{d}/metrics.jsonl") if l.strip()]
    return rows, json.load(open(f"{d}/summary.json"))
(c_rows, c) = run(cpu)
rel = lambda a, b: abs(a - b) / abs(b)
for label, d in (("GPU", gpu), ("GPU fused attention", fused)):
    g_rows, g = run(d)
    checks = [("loss at step 1", g_rows[0]["loss"], c_rows[0]["loss"], 1e-3),
              (f"loss at step {g_rows[-1]['step']}", g_rows[-1]["loss"], c_rows[-1]["loss"], rtol),
              ("validation loss", g["val_loss"], c["val_loss"], rtol)]
    print(f"GPT 4 layers x 256, context 256 (bench/gpt-cpu.yaml), fp32, 1 worker: {label} "
          f"{g['tokens_per_second']:.0f} tokens/s (attention {g.get('attention')}), CPU {c['tokens_per_second']:.0f} tokens/s")
    for what, a, b, tol in checks:
        if a is None or b is None:
            print(f"FAIL: GPT {label} {what}: {a}, CPU {b} (null: not finite)")
            continue
        verdict = "ok" if rel(a, b) <= tol else "FAIL"
        print(f"{verdict}: GPT {label} {what}: {a:.6f}, CPU {b:.6f}, relative difference {rel(a, b):.1e} (tolerance {tol:g})")
PY
      fail "comparing the GPT's GPU and CPU runs (their run directories: $out/gpt-tiny-*)"
    failures=$((failures + $(grep -c "^FAIL: GPT" "$summary" || true)))
    grep -q "^FAIL: GPT GPU fused" "$summary" || fused_ok=1
  fi

  # 5b, 5c. GPT-2 124M: ringmaster (and its doctor) against PyTorch.
  if [ $quick = 0 ]; then
    gpt=gpt2-124m
    # the fused attention where 5a found it agreeing with the CPU, else the simple one
    attention=simple
    [ "${fused_ok:-0}" = 1 ] && attention=fused
    gpt_job=(--set data.dir="$gpt_data/brown-gpt2" --set train.precision="$precision" --set train.attention=$attention
             "${gpt_sets[@]}")
    timeout -k 10 60 "$bin/ringmaster-bench-gemm-gpu" --dims 768,3072,768 --batch 16384 >"$out/gemm-gpt.json" \
      2>"$out/gemm-gpt.log" || fail "GEMM benchmark at the GPT's shapes (log: $out/gemm-gpt.log)"
    t=$(cap_s 120)
    if [ "$t" -lt 30 ]; then
      note "SKIP 5c (doctor): ${t}s left of the ${budget_s}s budget"
    elif ! timeout -k 10 "$t" "$bin/ringmaster" doctor "$gpt_config" --run-dir "$out/$gpt" "${gpt_job[@]}" \
         >"$out/$gpt-doctor.log" 2>&1; then
      tail -n 10 "$out/$gpt-doctor.log" >&2
      fail "ringmaster doctor $gpt_config (log: $out/$gpt-doctor.log)"
    fi
    # Device memory as nvidia-smi sees it (the run reports none of its
    # own): the most used while a job runs, less what was used before.
    mem_watch() { # FILE: samples memory.used (MiB) every 200 ms into FILE
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$1" 2>/dev/null &
      mem_pid=$!
    }
    mem_stop() { kill "$mem_pid" 2>/dev/null || true; wait "$mem_pid" 2>/dev/null || true; }
    mem_base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -n 1 || true)
    rm_ok=0 torch_ok=0
    t=$(cap_s 150)
    if [ "$t" -lt 40 ]; then
      note "SKIP 5b: ${t}s left of the ${budget_s}s budget"
    else
      mem_watch "$out/$gpt-memory.txt"
      if job_data=$gpt_data/brown-gpt2 job_timeout=$t run_job $gpt "$gpt_config" --set train.precision="$precision" \
         --set train.attention=$attention; then
        rm_ok=1
      else
        fail "ringmaster run $gpt_config in $precision (log: $out/$gpt.log)"
      fi
      mem_stop
      t=$(cap_s 300)
      if [ $rm_ok = 1 ] && [ -z "$python" ]; then
        fail "no python3 with torch: no PyTorch baseline for the GPT"
      elif [ $rm_ok = 1 ] && [ "$t" -lt 40 ]; then
        note "SKIP the GPT's PyTorch baseline: ${t}s left of the ${budget_s}s budget"
      elif [ $rm_ok = 1 ]; then
        # eager first (about 25 s), then torch.compile in what is left
        mem_watch "$out/torch-$gpt-memory.txt"
        if timeout -k 10 "$t" "$python" bench/torch_gpt_gpu.py --config "$out/$gpt/config.yaml" \
             --data "$gpt_data/brown-gpt2" --gemm-json "$out/gemm-gpt.json" --time-limit $((t - 5)) \
             --json "$out/torch-$gpt.json" >"$out/torch-$gpt.log" 2>&1; then
          torch_ok=1
        else
          tail -n 10 "$out/torch-$gpt.log" >&2
          fail "bench/torch_gpt_gpu.py (log: $out/torch-$gpt.log)"
        fi
        mem_stop
      fi
    fi
    if [ $rm_ok = 1 ]; then
      "${python:-python3}" - "$out" "$gpt" "$torch_ok" "${mem_base:-}" <<'PY' | tee -a "$summary" ||
import json, os, sys
out, name, torch_ok, mem_base = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
run = f"{out}/{name}"
s = json.load(open(f"{run}/summary.json"))
rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if l.strip()]
context = round(s["tokens_per_second"] / s["samples_per_second"])
tokens_per_step = s["global_batch"] * context
steady = rows[5:] or rows
step_s = sum(r.get("step_s_max", r["step_s"]) for r in steady) / len(steady)
rm_tps = tokens_per_step / step_s
t = json.load(open(f"{out}/torch-{name}.json")) if torch_ok else None
# ringmaster-bench-gemm-gpu --dims 768,3072,768: 8192^3 and the block's MLP shapes
gemm = json.load(open(f"{out}/gemm-gpt.json")) if os.path.exists(f"{out}/gemm-gpt.json") else {}
prec = t["precision"] if t else None

def mib_peak(path):
    """The most memory.used sampled, less the use before the run."""
    try:
        used = [int(x) for x in open(path).read().split() if x.isdigit()]
    except OSError:
        used = []
    return f"{max(used) - int(mem_base or 0)} MiB" if used else "n/a"

print(f"GPT-2 124M ({s['parameters']} parameters as ringmaster counts them), 1 GPU, {s['global_batch']} x {context} "
      f"tokens a step: ringmaster {rm_tps:.0f} tokens/s steady (mean step {step_s * 1e3:.1f} ms over steps "
      f"{steady[0]['step']}-{steady[-1]['step']}; the run's own figure {s['tokens_per_second']:.0f} with the first steps)")
if t:
    fpt = t["flops_per_token"]
    line = (f"GPT-2 124M {prec}: PyTorch {t['tokens_per_second']:.0f} tokens/s ({t['framework']}; "
            f"{t['compile_note']}); ringmaster/PyTorch {rm_tps / t['tokens_per_second']:.2f}x")
    print(line)
    print(f"GPT-2 124M MFU (llm.c: 6N + 6LCT = {fpt / 1e6:.1f} MFLOP/token, N = {t['parameters']} with the padded "
          f"vocabulary and positions):")
    for label, peak, src in (("datasheet", t["datasheet_peak_tflops"], f"{t['datasheet_entry']} {prec} dense"),
                             ("measured GEMM", gemm.get(f"{prec}_tflops"), f"cuBLAS {prec} 8192^3")):
        if peak:
            print(f"  against {label} {peak:.0f} TFLOP/s ({src}): ringmaster {rm_tps * fpt / peak / 1e12:.1%}, "
                  f"PyTorch {t['tokens_per_second'] * fpt / peak / 1e12:.1%}")
        else:
            print(f"  against {label}: n/a (no {label} figure for {t['device']} in {prec})")
    if gemm.get(f"model_{prec}_tflops"):
        print(f"  cuBLAS {prec} at the MLP's shapes (16384 x 768 x 3072 and back): "
              f"{gemm[f'model_{prec}_tflops']:.0f} TFLOP/s")
    print(f"GPT-2 124M attention: PyTorch {t['attention']}; ringmaster {s.get('attention', 'not reported in summary.json')}")
rm_mem = s.get("memory_bytes_per_worker")
rm_mem = (f"{rm_mem / 2**20:.0f} MiB at start-up (summary.json memory_bytes_per_worker: cudaMemGetInfo around "
          f"the setup), " if rm_mem else "") + (
    f"{mib_peak(f'{out}/{name}-memory.txt')} peak (nvidia-smi memory.used sampled every 200 ms, less before: "
    "context, cuBLAS workspace and NCCL included)")
line = f"GPT-2 124M device memory, train.recompute {s.get('recompute', 0)}: ringmaster {rm_mem}"
if t and "peak_memory_allocated_bytes" in t:
    line += (f"; PyTorch {t['peak_memory_allocated_bytes'] / 2**20:.0f} MiB allocated, "
             f"{t['peak_memory_reserved_bytes'] / 2**20:.0f} MiB reserved (torch.cuda), "
             f"{mib_peak(f'{out}/torch-{name}-memory.txt')} by nvidia-smi as above")
print(line)
p = s.get("prediction")
if p:
    predicted_tps = tokens_per_step / p["predicted_step_s"]
    print(f"GPT-2 124M doctor: predicted step {p['predicted_step_s'] * 1e3:.1f} ms ({predicted_tps:.0f} tokens/s, "
          f"bottleneck {p['bottleneck']}); measured {step_s * 1e3:.1f} ms steady: measured/predicted "
          f"{rm_tps / predicted_tps:.2f} (whole run {p['measured_over_predicted']:.2f})")
else:
    print("GPT-2 124M doctor: no prediction in summary.json (no doctor.json in the run directory)")
PY
        fail "the GPT-2 124M report (the runs: $out/$gpt, $out/torch-$gpt.json)"
      # 5d. what train.recompute 1 and 2 save on the same job: the memory
      # each takes at start-up, from two steps each, while time is left
      note "GPT-2 124M device memory, train.recompute 0: $(counted_mib "$gpt_config" "${gpt_job[@]}") MiB counted by ringmaster validate (5b measured it)"
      for r in 1 2; do
        t=$(cap_s 90)
        if [ "$t" -lt 45 ]; then
          note "SKIP 5d (recompute $r): ${t}s left of the ${budget_s}s budget"
          break
        fi
        if job_data=$gpt_data/brown-gpt2 job_timeout=$t run_job $gpt-recompute$r "$gpt_config" \
           --set train.precision="$precision" --set train.attention=$attention --set train.recompute=$r \
           --set train.steps=2 --set train.warmup_steps=1 --set train.eval_tokens=1024; then
          counted=$(counted_mib "$gpt_config" "${gpt_job[@]}" --set train.recompute=$r)
          "${python:-python3}" -c "import json,sys; s=json.load(open(sys.argv[1])); print(f'GPT-2 124M device memory, train.recompute {sys.argv[2]}: {s[\"memory_bytes_per_worker\"] / 2**20:.0f} MiB at start-up, {sys.argv[3]} MiB counted by ringmaster validate')" \
            "$out/$gpt-recompute$r/summary.json" "$r" "${counted:-?}" | tee -a "$summary"
        else
          fail "ringmaster run $gpt_config with train.recompute $r (log: $out/$gpt-recompute$r.log)"
        fi
      done
      # 5e. the largest shape: at width 1600 (GPT-2 XL's, 25 heads),
      # context 1024, one sequence a step, recompute 2, the most layers
      # ringmaster validate counts into this device's memory; trained until
      # its second step is logged (its final checkpoint, 12 bytes a
      # parameter, is not waited for), while time is left. Reports whether
      # it trained and the memory it took against the count.
      t=$(cap_s 240)
      device_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -n 1 | tr -dc '0-9' || true)
      if [ "$t" -lt 150 ] || [ -z "$device_mib" ]; then
        note "SKIP 5e (the largest shape): ${t}s left of the ${budget_s}s budget, device memory '${device_mib}' MiB"
      else
        big=(--set model.dim=1600 --set model.heads=25 --set train.global_batch=1 --set train.grad_accum=1
             --set train.recompute=2 --set train.attention=$attention --set train.precision="$precision"
             --set data.dir="$gpt_data/brown-gpt2" --set train.steps=50 --set train.warmup_steps=1)
        # validate exits 3 when the base shape does not fit: its answer is still printed
        layers=$({ "$bin/ringmaster" validate "$gpt_config" "${big[@]}" "${gpt_sets[@]}" --device-memory "${device_mib}M" 2>&1 || true; } |
                 sed -n 's/^the most layers of dim [0-9]*, context [0-9]* that fit: \([0-9]*\).*/\1/p')
        if [ -z "$layers" ]; then
          note "SKIP 5e: ringmaster validate found no shape of width 1600 that fits ${device_mib} MiB"
        else
          big+=(--set model.layers="$layers")
          counted=$(counted_mib "$gpt_config" "${big[@]}" || true)
          dir=$out/gpt-largest
          # its own session, so that the whole job (ringmaster run, mpirun
          # in its own group, the ranks) can be stopped by signal
          setsid "$bin/ringmaster" run "$gpt_config" --run-dir "$dir" --set launch.mpirun="$mpirun_cmd" "${big[@]}" \
            >"$out/gpt-largest.log" 2>&1 &
          pid=$!
          deadline=$((SECONDS + t - 20))
          steps=0
          while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ] && [ "$steps" -lt 2 ]; do
            sleep 2
            steps=$(grep -c '"step"' "$dir/metrics.jsonl" 2>/dev/null || true)
            steps=${steps:-0}
          done
          # stop it before its final checkpoint (12 bytes a parameter):
          # SIGTERM checkpoints, so SIGKILL, to ringmaster run's session and
          # to the ranks, which mpirun runs in a group of its own
          kill -9 -- -"$pid" 2>/dev/null || true
          pkill -9 -f "ringmaster-(coordinator|worker) $dir/config.yaml" 2>/dev/null || true
          wait "$pid" 2>/dev/null || true
          measured=$(grep -o 'memory: [0-9.]* MiB' "$out/gpt-largest.log" 2>/dev/null | head -n 1 | tr -dc '0-9.' || true)
          if [ "$steps" -ge 2 ]; then
            note "largest GPT on this device (counted by ringmaster validate): $layers layers x dim 1600, context 1024, 1 sequence a step, recompute 2: trained $steps steps; ${measured:-?} MiB at start-up, ${counted:-?} MiB counted"
          else
            fail "the largest shape counted to fit ($layers layers x 1600, ${counted:-?} MiB) did not train 2 steps (log: $out/gpt-largest.log)"
          fi
        fi
      fi
    fi
  fi
fi

say "summary ($summary)"
cat "$summary"
if [ $failures -gt 0 ]; then
  echo "gpu-check.sh: $failures check(s) failed"
  exit 1
fi
echo "gpu-check.sh: all checks passed"
