# Progress output. On a terminal (a pseudo-terminal from script(1)): one
# bar redrawn in place with step/total, epoch, loss, samples/s, ETA and the
# slowest phase. Quiet: no progress at all. Verbose: every worker's phase
# times every observe.progress_every_steps steps. (Plain timestamped lines
# are checked in metrics_endpoint.sh.)
source "$(dirname "$0")/lib.sh"
command -v script >/dev/null || fail "script(1) (util-linux) is not installed"
write_job job.yaml
script -qec "'$RINGMASTER' run job.yaml --run-dir '$WORK/tty' --set train.steps=300 --set debug.loader_throttle_mb_s=8" \
  /dev/null >tty.txt 2>&1 || { cat tty.txt; fail "run on a terminal failed"; }
"$PYTHON" - tty.txt <<'PY'
import re, sys
text = open(sys.argv[1], "rb").read().decode()
bars = re.findall(r"\r\x1b\[Kstep (\d+)/300 \[[=> ]{24}\] epoch [0-9.]+  loss [0-9.]+  \d+ samples/s  eta [0-9hms]+  slowest: [a-z -]+", text)
assert len(bars) >= 3, f"expected the bar to be redrawn, found {len(bars)} draws: {text[-2000:]!r}"
steps = [int(s) for s in bars]
assert steps == sorted(steps) and steps[-1] == 300, steps
# redrawn in place: no bar line ends with a newline before the last one
lines_with_bar = [l for l in text.split("\n") if "step " in l and "/300 [" in l]
assert len(lines_with_bar) == 1, f"the bar was printed on {len(lines_with_bar)} lines"
assert "\ndone: 300 steps on 2 workers" in text.replace("\r\n", "\n"), text[-500:]
print(f"{len(bars)} redraws")
PY

"$RINGMASTER" run job.yaml --run-dir "$WORK/quiet" --set train.steps=200 --set observe.verbosity=quiet >quiet.txt 2>&1 ||
  { cat quiet.txt; fail "quiet run failed"; }
if grep -E "step [0-9]+/200|^done:|resolved config" quiet.txt; then fail "quiet mode printed progress"; fi

"$RINGMASTER" run job.yaml --run-dir "$WORK/verbose" --set train.steps=200 --set observe.verbosity=verbose \
  --set observe.progress_every_steps=100 >verbose.txt 2>&1 || { cat verbose.txt; fail "verbose run failed"; }
for w in 0 1; do
  for s in 100 200; do
    grep -qE "step $s worker $w \([^)]*\): data wait [0-9.]+ ms, forward \+ backward [0-9.]+ ms, gradient reduction wait [0-9.]+ ms, checkpoint stall [0-9.]+ ms, optimizer [0-9.]+ ms, parameter all-gather [0-9.]+ ms" verbose.txt ||
      { cat verbose.txt; fail "no phase line for worker $w at step $s"; }
  done
done
echo "progress: ok"
