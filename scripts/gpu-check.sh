#!/usr/bin/env bash
# The GPU backend, checked on a machine with a CUDA GPU, in one command:
#
#   scripts/gpu-check.sh [--quick] [--cpu-reference]
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
#      against the measured GEMM rate.
#
# Exit status: 0 when every check passes, 1 when one fails, 77 when there
# is no usable GPU. Everything lands in a fresh directory, printed at the
# start; the summary is its summary.txt.
#
# A GPU machine without network may lack MPI, libyaml, OpenBLAS, xxhash,
# Check, pkg-config or the dataset: prepare them once with
# scripts/gpu-carry.sh on a Debian machine, bring the folder along
# (RINGMASTER_CARRY, default .gpu-carry), and this script unpacks what is
# missing under /opt/ringmaster-carry (never into /).
#
# Every step runs under a timeout (RUN_TIMEOUT_S for each training run,
# default 300), so a hang costs minutes, not the machine's whole lease.
#
# Environment: BUILD_DIR, RINGMASTER_CARRY, FASHION_MNIST_DIR, PYTHON (a
# python3 with torch; default: the first one on PATH that has it),
# CUDA_ARCHS (default: the GPU's compute capability), MIN_ACCURACY, RINGMASTER_NCCL_ROOT.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0 cpu_reference=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    --cpu-reference) cpu_reference=1 ;;
    -h|--help) sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

build=${BUILD_DIR:-build-gpu}
carry=${RINGMASTER_CARRY:-.gpu-carry}
min_accuracy=${MIN_ACCURACY:-0.89}
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
if [ -z "$gpu" ]; then
  echo "gpu-check.sh: skipped: no GPU visible (nvidia-smi finds none)"
  exit 77
fi
note "GPU: $gpu"
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$nvcc" ] || die "no nvcc on PATH or at /usr/local/cuda/bin/nvcc"
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
archs=${CUDA_ARCHS:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ')}
archs=${archs:-native}
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

# --- 2. agreement tests ---------------------------------------------------
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

# --- data -----------------------------------------------------------------
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
[ -f "$src/train-images-idx3-ubyte.gz" ] || src=$carry/fashion-mnist
[ -f "$src/train-images-idx3-ubyte.gz" ] || die "no Fashion-MNIST IDX files (FASHION_MNIST_DIR, or scripts/gpu-carry.sh)"
data=$build/gpu-check-data
for split in train:train t10k:test; do
  prefix=${split%%:*} name=${split##*:}
  [ -f "$data/$name/index.rmi" ] || "$bin/ringmaster" data import-idx --images "$src/$prefix-images-idx3-ubyte.gz" \
    --labels "$src/$prefix-labels-idx1-ubyte.gz" --out "$data/$name" >/dev/null
done

json_field() { # FILE KEY
  "${python:-python3}" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
run_job() { # NAME CONFIG ARGS...: ringmaster run into $out/NAME
  local name=$1 config=$2
  shift 2
  if ! timeout -k 10 "${RUN_TIMEOUT_S:-300}" "$bin/ringmaster" run "$config" --run-dir "$out/$name" --set data.dir="$data" \
       --set launch.mpirun="$mpirun_cmd" "$@" >"$out/$name.log" 2>&1; then
    tail -n 20 "$out/$name.log" >&2
    return 1
  fi
}

# --- 3. Fashion-MNIST on one GPU ------------------------------------------
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

# --- 3b. ZeRO-1 on one GPU against zero 0 ----------------------------------
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

# --- 4. the larger MLP against PyTorch -------------------------------------
if [ $quick = 0 ]; then
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

say "summary ($summary)"
cat "$summary"
if [ $failures -gt 0 ]; then
  echo "gpu-check.sh: $failures check(s) failed"
  exit 1
fi
echo "gpu-check.sh: all checks passed"
