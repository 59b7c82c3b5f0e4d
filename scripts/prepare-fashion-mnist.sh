#!/usr/bin/env bash
# Converts Debian's dataset-fashion-mnist IDX files into ringmaster shards:
# OUT/train and OUT/test (default OUT: data/fashion-mnist).
set -euo pipefail
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
out=${1:-data/fashion-mnist}
ringmaster=${RINGMASTER:-ringmaster}
if [ ! -f "$src/train-images-idx3-ubyte.gz" ]; then
  echo "prepare-fashion-mnist.sh: $src has no Fashion-MNIST (apt-get install dataset-fashion-mnist)" >&2
  exit 1
fi
for split in train:train t10k:test; do
  prefix=${split%%:*} name=${split##*:}
  if [ -f "$out/$name/index.rmi" ]; then
    echo "$out/$name: already prepared"
    continue
  fi
  "$ringmaster" data import-idx --images "$src/$prefix-images-idx3-ubyte.gz" \
    --labels "$src/$prefix-labels-idx1-ubyte.gz" --out "$out/$name"
done
