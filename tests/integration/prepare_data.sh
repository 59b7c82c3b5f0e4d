# The fashion_mnist_data fixture: imports Debian's Fashion-MNIST IDX files
# into DATA_DIR/train and DATA_DIR/test with `ringmaster data import-idx`,
# or skips (77) when they are not installed (apt-get install
# dataset-fashion-mnist). Run as: bash prepare_data.sh BIN_DIR DATA_DIR SOURCE_DIR
set -euo pipefail
BIN=$1
DATA=$2
SRC=$3
if [ ! -f "$SRC/train-images-idx3-ubyte.gz" ] || [ ! -f "$SRC/t10k-images-idx3-ubyte.gz" ]; then
  echo "SKIP: no Fashion-MNIST in $SRC; the end-to-end tests skip too"
  exit 77
fi
for split in train:train t10k:test; do
  prefix=${split%%:*} name=${split##*:}
  rm -rf "${DATA:?}/$name"
  "$BIN/ringmaster" data import-idx --images "$SRC/$prefix-images-idx3-ubyte.gz" \
    --labels "$SRC/$prefix-labels-idx1-ubyte.gz" --out "$DATA/$name"
done
grep -qx "samples 60000" "$DATA/train/index.rmi" || { cat "$DATA/train/index.rmi"; exit 1; }
grep -qx "samples 10000" "$DATA/test/index.rmi" || { cat "$DATA/test/index.rmi"; exit 1; }
