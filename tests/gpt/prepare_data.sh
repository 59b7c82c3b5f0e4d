#!/usr/bin/env bash
# Fixture: a byte-level token dataset from the license texts of
# /usr/share/common-licenses (about 250 KB of English in 20-odd
# documents), imported with `ringmaster data import-text`.
set -euo pipefail
BIN=$1
OUT=$2
rm -rf "$OUT"
texts=(/usr/share/common-licenses/*)
[ -f "${texts[0]}" ] || { echo "SKIP: /usr/share/common-licenses is empty"; exit 77; }
files=()
for f in "${texts[@]}"; do [ -f "$f" ] && [ ! -L "$f" ] && files+=("$f"); done
"$BIN/ringmaster" data import-text "${files[@]}" --out "$OUT" --tokenizer bytes --val-fraction 0.15
