#!/usr/bin/env bash
# `--tokenizer gpt2` gives the reference encoders' ids: ringmaster, the
# JavaScript encoder of the npm package gpt-3-encoder, and js-tiktoken's
# gpt2 encoding, run under node, must agree id for id on over 1 MB of mixed
# text (gpt2/make_text.py), and ringmaster's decode must give the text
# back (as the references read it: invalid UTF-8 repaired to U+FFFD). Also
# prints the encoding speeds, one thread. Skips (77) without node and npm
# or when the packages cannot be fetched; they are cached in CACHE_DIR.
#
#   bash gpt2_tokenizer.sh BIN_DIR CACHE_DIR
set -euo pipefail
BIN=$1
CACHE=$2
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python3}
PACKAGES="gpt-3-encoder@1.1.4 js-tiktoken@1.0.21 base64-js@1.5.1"

skip() {
  echo "gpt2_tokenizer: skipped: $*"
  exit 77
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
command -v node >/dev/null || skip "no node (scripts/install-deps.sh --tests installs nodejs)"
command -v npm >/dev/null || skip "no npm"

# The reference packages, as node_modules, fetched once
MODULES=$CACHE/node_modules
if [ ! -f "$MODULES/.complete" ]; then
  rm -rf "$MODULES" "$CACHE/packs" && mkdir -p "$MODULES" "$CACHE/packs"
  (cd "$CACHE/packs" && npm pack --silent $PACKAGES >/dev/null 2>&1) || skip "npm pack $PACKAGES failed (offline?)"
  for tgz in "$CACHE"/packs/*.tgz; do
    name=$(basename "$tgz" .tgz)
    name=${name%-*}
    mkdir -p "$MODULES/$name"
    tar xzf "$tgz" -C "$MODULES/$name" --strip-components=1
  done
  touch "$MODULES/.complete"
fi
VOCAB=$CACHE/vocab
"$REPO/scripts/fetch-gpt2-vocab.sh" "$VOCAB" >/dev/null || skip "scripts/fetch-gpt2-vocab.sh failed (offline?)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-gpt2.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" "$HERE/gpt2/make_text.py" "$REPO" "$WORK/text.txt"
BYTES=$(stat -c %s "$WORK/text.txt")
[ "$BYTES" -ge 1000000 ] || fail "the mixed text is only $BYTES bytes"

NODE_PATH=$MODULES node "$HERE/gpt2/reference_encode.js" "$WORK/text.txt" "$WORK" >"$WORK/js-speed.txt"

"$BIN/ringmaster" data tokenize --tokenizer gpt2 --vocab-dir "$VOCAB" --stats "$WORK/text.txt" \
  >"$WORK/ringmaster.ids" 2>"$WORK/rm-speed.txt"

# identical ids, or the first difference with its context
compare() {
  cmp -s "$WORK/ringmaster.ids" "$WORK/$1" && return 0
  "$PYTHON" - "$WORK/ringmaster.ids" "$WORK/$1" "$VOCAB/encoder.json" <<'PY'
import json, sys
a, b = (open(p).read().split() for p in sys.argv[1:3])
dec = {v: k for k, v in json.load(open(sys.argv[3])).items()}
i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
show = lambda ids: " ".join(f"{t}:{dec.get(int(t), '?')!r}" for t in ids[max(0, i - 5):i + 5])
print(f"{len(a)} ids against {len(b)}; first difference at id {i}:\n  ringmaster {show(a)}\n  reference  {show(b)}",
      file=sys.stderr)
PY
  fail "ringmaster's ids differ from $1"
}
compare gpt3.ids
compare tiktoken.ids
IDS=$(wc -w <"$WORK/ringmaster.ids")

# decoding gives the text back (as the references read it)
"$BIN/ringmaster" data tokenize --tokenizer gpt2 --vocab-dir "$VOCAB" --decode "$WORK/ringmaster.ids" >"$WORK/back.txt"
cmp "$WORK/back.txt" "$WORK/repaired.txt" || fail "decoding the ids does not give the text back"
# and the bytes tokenizer round-trips any bytes, invalid UTF-8 included
"$BIN/ringmaster" data tokenize --tokenizer bytes "$WORK/text.txt" >"$WORK/bytes.ids"
"$BIN/ringmaster" data tokenize --tokenizer bytes --decode "$WORK/bytes.ids" >"$WORK/bytes-back.txt"
cmp "$WORK/bytes-back.txt" "$WORK/text.txt" || fail "the bytes tokenizer does not round-trip"

echo "gpt2_tokenizer: $IDS ids identical (ringmaster, gpt-3-encoder, js-tiktoken) on $BYTES bytes of mixed text; decode round-trips"
echo "encoding speed, one thread, on those $BYTES bytes:"
sed 's/^gpt2: .* in \(.*\)$/  ringmaster \1/' "$WORK/rm-speed.txt"
sed 's/^/  /' "$WORK/js-speed.txt"
