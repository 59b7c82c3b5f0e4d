#!/usr/bin/env bash
# Drops a share of one cluster host's packets, each way, as a flaky link
# or a bad switch port would (nftables in the host's network namespace,
# on eth0: `numgen random` picks the packets). 100 cuts the host off while
# its link stays up (a partition: packets vanish, nothing is refused);
# off removes the rule.
#   scripts/cluster/loss.sh HOST PERCENT|off      (PERCENT 1..100)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -eq 2 ] && { [ "$2" = off ] || { [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] && [ "$2" -le 100 ]; }; } ||
  cluster_die "usage: loss.sh HOST PERCENT|off (PERCENT 1..100)"
command -v nft >/dev/null || cluster_die "needs nft (Debian: nftables)"
pid=$(cluster_pid "$1")
in_host() { nsenter -t "$pid" -n "$@"; }
in_host nft delete table inet rmcl_loss 2>/dev/null || true
if [ "$2" = off ]; then
  echo "cluster: $1 drops none of its packets"
  exit 0
fi
pick=""
[ "$2" -lt 100 ] && pick="numgen random mod 100 < $2"
in_host nft -f - <<NFT
table inet rmcl_loss {
  chain out { type filter hook output priority 0; oifname "eth0" $pick drop; }
  chain in { type filter hook input priority 0; iifname "eth0" $pick drop; }
}
NFT
echo "cluster: $1 drops $2% of its packets each way"
