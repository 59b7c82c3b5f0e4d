#!/usr/bin/env bash
# Shapes one cluster host's link, as a slower network would be: both
# directions (what the host sends, on its eth0, and what it receives, on
# the bridge's side of its link) are held to RATE by a token bucket (tbf).
#   scripts/cluster/shape.sh HOST RATE    RATE: 1gbit, 100mbit, 500kbit, ...
#   scripts/cluster/shape.sh HOST off     back to the link's full speed
# Two hosts shaped to R talk at R; an unshaped one talks at memory speed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -eq 2 ] || cluster_die "usage: shape.sh HOST RATE|off (RATE: 1gbit, 100mbit, ...)"
host=$1
rate=$2
pid=$(cluster_pid "$host")
outside=$CLUSTER_BRIDGE-$host
ip link show "$outside" >/dev/null 2>&1 || cluster_die "host $host has no link $outside"
inside() { nsenter -t "$pid" -n "$@"; }

if [ "$rate" = off ]; then
  inside tc qdisc del dev eth0 root 2>/dev/null || true
  tc qdisc del dev "$outside" root 2>/dev/null || true
  echo "cluster: $host's link at full speed"
  exit 0
fi
[[ $rate =~ ^([0-9]+)(gbit|mbit|kbit|bit)$ ]] ||
  cluster_die "rate '$rate' is not a number with gbit, mbit, kbit or bit (e.g. 1gbit, 100mbit)"
case ${BASH_REMATCH[2]} in
  gbit) bits=$((BASH_REMATCH[1] * 1000000000)) ;;
  mbit) bits=$((BASH_REMATCH[1] * 1000000)) ;;
  kbit) bits=$((BASH_REMATCH[1] * 1000)) ;;
  bit) bits=${BASH_REMATCH[1]} ;;
esac
[ "$bits" -ge 8000 ] || cluster_die "rate '$rate' is below 8kbit"
# The bucket holds 10 ms at the rate (what a timer tick may have to send at
# once; less throttles below the rate), and at least one 64 KiB segment
# (the veth offloads send that much as one packet); 100 ms of queue.
burst=$((bits / 8 / 100))
[ "$burst" -ge 65536 ] || burst=65536
for dev in eth0 "$outside"; do
  if [ "$dev" = eth0 ]; then run=inside; else run=; fi
  $run tc qdisc replace dev "$dev" root tbf rate "$rate" burst "$burst" latency 100ms ||
    cluster_die "cannot shape $dev of $host (tc tbf)"
done
echo "cluster: $host's link shaped to $rate each way"
