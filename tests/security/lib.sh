# Shared helpers for the security tests. Each test is run by CTest as
#   bash TEST.sh BIN_DIR DATA_DIR IDX_DIR
# (DATA_DIR: the plain Fashion-MNIST shards; IDX_DIR: Debian's IDX files, to
# import encrypted copies) and works in a scratch directory it removes on
# success.
set -euo pipefail
FAULT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../fault" && pwd)
source "$FAULT/lib.sh"
SRC=${3:?IDX source directory}
HERE=$FAULT # job.yaml lives with the fault tests
[ -f "$SRC/train-images-idx3-ubyte.gz" ] || { echo "SKIP: no Fashion-MNIST IDX files in $SRC"; exit 77; }

# import_encrypted KEY OUT_DIR: sealed train and test splits.
import_encrypted() {
  local key=$1 out=$2
  "$RM" data import-idx --images "$SRC/train-images-idx3-ubyte.gz" --labels "$SRC/train-labels-idx1-ubyte.gz" \
    --out "$out/train" --encrypt --key-file "$key" >/dev/null
  "$RM" data import-idx --images "$SRC/t10k-images-idx3-ubyte.gz" --labels "$SRC/t10k-labels-idx1-ubyte.gz" \
    --out "$out/test" --encrypt --key-file "$key" >/dev/null
}

# protection FILE: the u32 protection field of a shard or checkpoint header
protection() { od -An -tu4 -j12 -N4 "$1" | tr -d ' '; }

# flip_byte FILE OFFSET: inverts one byte in place
flip_byte() {
  local file=$1 off=$2 b
  b=$(od -An -tu1 -j"$off" -N1 "$file" | tr -d ' ')
  printf "$(printf '\\%03o' $((b ^ 0xff)))" | dd of="$file" bs=1 seek="$off" conv=notrunc status=none
}

# expect_fail LOG PATTERN WHAT: the last command failed and LOG says PATTERN
expect_in() {
  grep -q -- "$2" "$1" || { cat "$1"; fail "$3: expected the message to contain '$2'"; }
}
