#!/usr/bin/env bash
# A token split larger than the memory a job may use trains anyway: shards
# are mapped and paged, never read whole, and their checksums are verified
# as the loader reaches them. Makes a ~300 MB split (llm.c files written by
# Python, then `ringmaster data import-tokens`), then reads and checks every
# window of it inside a 64 MB memory cgroup (systemd-run --scope where
# systemd runs; else a child of this process's cgroup, v2 or v1). Skips
# (77) where no memory controller can be used.
#
#   bash tokens_larger_than_memory.sh BIN_DIR READ_TOKENS
set -euo pipefail
BIN=$1
READ_TOKENS=$2
PYTHON=${PYTHON:-python3}
LIMIT_MB=64
FILES=3
TOKENS_PER_FILE=50000000 # 3 x 100 MB of u16 tokens
VOCAB=50257
CONTEXT=1024

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-tokens.XXXXXX")
CG=""
cleanup() {
  # the generated data goes whatever happened: it is large
  rm -rf "$WORK"
  if [ -n "$CG" ] && [ -d "$CG" ]; then rmdir "$CG" 2>/dev/null || true; fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
skip() {
  echo "SKIP: $*"
  exit 77
}

# RUN_LIMITED CMD...: runs CMD with memory limited to LIMIT_MB. Set up by
# the first of these that works here.
LIMITED=()
CG_PROCS=""
CG_PEAK=""
use_systemd() {
  [ -d /run/systemd/system ] && command -v systemd-run >/dev/null || return 1
  local probe=(systemd-run --quiet --scope -p "MemoryMax=${LIMIT_MB}M" -p MemorySwapMax=0)
  "${probe[@]}" true >/dev/null 2>&1 || return 1
  LIMITED=("${probe[@]}" --)
  echo "memory limit: systemd-run --scope -p MemoryMax=${LIMIT_MB}M"
}
use_cgroup_v2() {
  local root
  for root in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    [ -f "$root/cgroup.controllers" ] && break
    root=""
  done
  [ -n "$root" ] || return 1
  local own
  own=$(sed -n 's/^0:://p' /proc/self/cgroup)
  # a child gets a memory controller only where this cgroup hands it down
  grep -qw memory "$root$own/cgroup.subtree_control" 2>/dev/null || return 1
  CG=$root${own%/}/ringmaster-tokens-$$
  mkdir "$CG" 2>/dev/null || { CG=""; return 1; }
  echo $((LIMIT_MB << 20)) >"$CG/memory.max" || return 1
  echo 0 >"$CG/memory.swap.max" 2>/dev/null || true
  CG_PROCS=$CG/cgroup.procs
  CG_PEAK=$CG/memory.peak
  echo "memory limit: cgroup v2 $CG, memory.max ${LIMIT_MB} MB"
}
use_cgroup_v1() {
  local own
  own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
  [ -n "$own" ] && [ -d "/sys/fs/cgroup/memory$own" ] || return 1
  CG=/sys/fs/cgroup/memory${own%/}/ringmaster-tokens-$$
  mkdir "$CG" 2>/dev/null || { CG=""; return 1; }
  echo $((LIMIT_MB << 20)) >"$CG/memory.limit_in_bytes" || return 1
  echo $((LIMIT_MB << 20)) >"$CG/memory.memsw.limit_in_bytes" 2>/dev/null || true
  CG_PROCS=$CG/cgroup.procs
  CG_PEAK=$CG/memory.max_usage_in_bytes
  echo "memory limit: cgroup v1 $CG, memory.limit_in_bytes ${LIMIT_MB} MB"
}
run_limited() {
  if [ ${#LIMITED[@]} -gt 0 ]; then
    "${LIMITED[@]}" "$@"
  else
    bash -c 'echo $$ >"$1" && shift && exec "$@"' limited "$CG_PROCS" "$@"
  fi
}
use_systemd || use_cgroup_v2 || use_cgroup_v1 ||
  skip "no usable memory cgroup here (systemd-run --scope failed, and no cgroup v2 or v1 memory controller under $(sed -n 's/^0:://p' /proc/self/cgroup) is writable)"

# The limit must bite, or the read below proves nothing.
if run_limited "$READ_TOKENS" --hog $((4 * LIMIT_MB)) >"$WORK/hog.log" 2>&1; then
  skip "the ${LIMIT_MB} MB limit is not enforced here: a process touched $((4 * LIMIT_MB)) MB under it"
fi

start=$(date +%s.%N)
# llm.c token files: the token at position p of the whole stream is p % VOCAB
"$PYTHON" - "$WORK" "$FILES" "$TOKENS_PER_FILE" "$VOCAB" <<'PY'
import array, struct, sys
work, files, per_file, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
period = array.array("H", range(vocab)).tobytes()
for k in range(files):
    off = (k * per_file) % vocab
    rotated = period[2 * off:] + period[:2 * off]
    header = struct.pack("<256i", *([20240520, 1, per_file] + [0] * 253))
    with open(f"{work}/part{k}.bin", "wb") as f:
        f.write(header)
        whole, rest = divmod(per_file, vocab)
        block = rotated * 64
        for _ in range(whole // 64):
            f.write(block)
        f.write(rotated * (whole % 64))
        f.write(rotated[:2 * rest])
PY
made=$(date +%s.%N)
"$BIN/ringmaster" data import-tokens "$WORK"/part*.bin --out "$WORK/data/train" >"$WORK/import.log" 2>&1 ||
  { cat "$WORK/import.log"; fail "import-tokens failed"; }
cat "$WORK/import.log"
rm -f "$WORK"/part*.bin
imported=$(date +%s.%N)
bytes=$(du -sb "$WORK/data/train" | cut -f1)
[ "$bytes" -gt $((4 * LIMIT_MB << 20)) ] || fail "the split is only $bytes bytes: not larger than memory"

# every window, every token checked, inside the limit
run_limited "$READ_TOKENS" "$WORK/data/train" $CONTEXT --evict --pattern $VOCAB >"$WORK/read.log" 2>&1 ||
  { cat "$WORK/read.log"; fail "reading the split under a ${LIMIT_MB} MB limit failed"; }
cat "$WORK/read.log"
read_done=$(date +%s.%N)
if [ -n "$CG_PEAK" ] && [ -r "$CG_PEAK" ]; then
  peak=$(cat "$CG_PEAK")
  echo "cgroup peak: $((peak >> 20)) MB of ${LIMIT_MB} MB (the split is $((bytes >> 20)) MB)"
  # the pages were paged in under the limit, not served from a cache charged elsewhere
  [ "$peak" -gt $((LIMIT_MB << 19)) ] || fail "the read charged only $((peak >> 20)) MB to the cgroup"
fi
awk -v mb=$((bytes >> 20)) -v limit=$LIMIT_MB -v t0="$start" -v t1="$made" -v t2="$imported" -v t3="$read_done" \
  'BEGIN { printf "tokens larger than memory: ok (%d MB split read in a %d MB cgroup; generate %.1f s, import %.1f s, read %.1f s)\n", mb, limit, t1 - t0, t2 - t1, t3 - t2 }'
