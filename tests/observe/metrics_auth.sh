# /metrics off loopback needs a bearer token from a 0600 file: without
# one the job is refused naming the key; a token file other users can
# read is refused naming the file; requests without the token, or with a
# wrong one, get 401; the right token gets the figures.
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || fail "curl is not installed (scripts/install-deps.sh --tests)"
write_job job.yaml

if "$RINGMASTER" validate job.yaml --set observe.metrics_address=0.0.0.0 >no_token.txt 2>&1; then
  fail "0.0.0.0 without a token file was accepted"
fi
expect_in no_token.txt "observe.metrics_token_file"
expect_in no_token.txt "0.0.0.0"

printf 's3cret-token-%s\n' "$RANDOM$RANDOM" >token
chmod 644 token
if "$RINGMASTER" run job.yaml --run-dir "$WORK/refused" --set observe.metrics_address=0.0.0.0 \
  --set observe.metrics_token_file="$WORK/token" --set train.steps=30 >loose.txt 2>&1; then
  fail "a token file with mode 0644 was accepted"
fi
expect_in loose.txt "$WORK/token"
expect_in loose.txt "mode 0644"
[ ! -e "$WORK/refused/metrics.jsonl" ] || fail "the job ran with a readable token file"

if "$RINGMASTER" validate job.yaml --set observe.metrics_address=not-an-address >bad_addr.txt 2>&1; then
  fail "a bad address was accepted"
fi
expect_in bad_addr.txt "'not-an-address' is not an IPv4 or IPv6 address"

chmod 600 token
"$RINGMASTER" run job.yaml --run-dir "$WORK/run" --set train.steps=300 --set observe.metrics_address=0.0.0.0 \
  --set observe.metrics_token_file="$WORK/token" --set debug.loader_throttle_mb_s=4 >out.txt 2>&1 &
job=$!
wait_file "$WORK/run/metrics-url.txt"
port=$(sed -n 's|^http://0.0.0.0:\([0-9]*\)/metrics$|\1|p' "$WORK/run/metrics-url.txt")
[ -n "$port" ] || fail "unexpected URL $(cat "$WORK/run/metrics-url.txt")"
url=http://127.0.0.1:$port/metrics
for i in $(seq 1 100); do
  [ "$(http_status "$url" -H "Authorization: Bearer $(cat token)")" = 200 ] && break
  sleep 0.05
done
[ "$(http_status "$url")" = 401 ] || fail "no token: not 401"
[ "$(http_status "$url" -H "Authorization: Bearer wrong")" = 401 ] || fail "wrong token: not 401"
[ "$(http_status "$url" -H "Authorization: Bearer $(cat token)x")" = 401 ] || fail "token with a suffix: not 401"
[ "$(http_status "$url" -H "Authorization: Basic $(cat token)")" = 401 ] || fail "not a bearer token: not 401"
[ "$(http_status "${url%/metrics}/other")" = 401 ] || fail "an unauthorized request learned that a path does not exist"
curl -sf --max-time 5 -H "Authorization: Bearer $(cat token)" "$url" >scrape.txt || fail "the right token was refused"
grep -q '^ringmaster_step ' scrape.txt || { cat scrape.txt; fail "no figures with the right token"; }
wait "$job" || { cat out.txt; fail "the job failed"; }
grep -q "$(cat token)" out.txt "$WORK/run/config.yaml" "$WORK/run/events.jsonl" && fail "the token leaked into the logs"
echo "metrics auth: ok"
