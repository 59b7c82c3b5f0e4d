#!/usr/bin/env bash
# The GPT example in one command, from a fresh Debian machine as root:
# install the dependencies, build and install ringmaster, prepare the
# Brown corpus (byte-level), train configs/gpt-brown.yaml on 2 CPU workers
# (about 7 minutes on 2 cores), then print the validation loss and a
# sample. Arguments go to `ringmaster run` (e.g. --set train.steps=300).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cmake --install build >/dev/null
echo "installed: $(command -v ringmaster)"
RINGMASTER=$(command -v ringmaster) scripts/prepare-brown.sh data/brown
run_dir=runs/gpt-brown-$(date +%Y%m%d-%H%M%S)
ringmaster run configs/gpt-brown.yaml --run-dir "$run_dir" "$@"
echo
echo "validation loss: $(sed -n 's/.*"val_loss": *\([0-9.]*\).*/\1/p' "$run_dir/summary.json") nats per byte"
echo "sample (temperature 0.8, top 40):"
ringmaster sample "$run_dir" --prompt "The jury said" --tokens 300 --temperature 0.8 --top-k 40
