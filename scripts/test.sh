#!/usr/bin/env bash
# The whole test suite from a fresh Debian machine, as root: install the
# dependencies, build with warnings as errors, run every test through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --tests
# Where the CUDA toolkit is, the GPU backend must build (its tests skip
# without a GPU); elsewhere AUTO leaves it out.
cuda=AUTO
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null; then
  cuda=ON
fi
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh -DRINGMASTER_WERROR=ON -DRINGMASTER_CUDA=$cuda
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j 1
# the unit tests and a short mpirun run again, under ASan + UBSan
cd - >/dev/null
scripts/sanitize.sh
