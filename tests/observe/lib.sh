# Helpers for the observability tests, on top of the end-to-end ones
# (write_job, expect_in, fail, $RINGMASTER, $WORK, $PYTHON).
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

# wait_file PATH [SECONDS]: until PATH exists and is not empty.
wait_file() {
  local path=$1 limit=${2:-60} i
  for ((i = 0; i < limit * 20; i++)); do
    [ -s "$path" ] && return 0
    sleep 0.05
  done
  fail "timed out waiting for $path"
}

# http_status URL [curl options...]: the HTTP status code of a GET.
http_status() {
  local url=$1; shift
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" "$url"
}
