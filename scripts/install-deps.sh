#!/usr/bin/env bash
# Installs everything ringmaster needs to build, train and test, from
# Debian's packages. Run as root on Debian 12 (bookworm) or newer.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev
  libyaml-dev check libopenblas-dev zlib1g-dev libxxhash-dev
  libmicrohttpd-dev gnuplot-nox libsodium-dev
  libpcre2-dev
  dataset-fashion-mnist
  python3
)
# --tests: what the test suite drives besides ringmaster (a real Slurm,
# curl for /metrics, node and npm for the reference GPT-2 encoders, nftables
# for the cluster tests' lossy links)
if [ "${1:-}" = "--tests" ]; then
  packages+=(slurm-wlm munge curl nodejs nftables)
  # Debian packs npm apart; NodeSource's nodejs carries its own
  command -v npm >/dev/null || packages+=(npm)
fi
# --fuzz: clang with libFuzzer, for scripts/fuzz.sh
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(clang libclang-rt-dev)
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it installs Debian packages): sudo $0" >&2
  exit 1
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
