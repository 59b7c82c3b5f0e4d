#!/usr/bin/env bash
# The main job from a fresh Debian machine, as root: install the
# dependencies, build and install ringmaster, prepare Fashion-MNIST and
# train it data-parallel with configs/fashion_mnist.yaml. Arguments are
# passed to `ringmaster run` (e.g. --workers 4, --set train.epochs=2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cmake --install build >/dev/null
echo "installed: $(command -v ringmaster)"
scripts/prepare-fashion-mnist.sh data/fashion-mnist
exec ringmaster run configs/fashion_mnist.yaml "$@"
