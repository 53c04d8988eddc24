#!/usr/bin/env bash
# The README walkthrough as one script: key ceremonies, a signed bundle, the server,
# an allowed, a denied and an escalated call, an offline-signed approval, the retried
# call, effects, a graceful stop, a pack exported from the store, verified and replayed.
#
#   cargo build --release -p airgap-cli -p helm-proxy
#   proxy/examples/walkthrough.sh [WORKDIR]
#
# Needs curl and jq. Everything happens in WORKDIR (default: a new temporary directory).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${HELM_BIN:-$repo/target/release}"
airgap="$bin/helm-airgap"
proxy="$bin/helm-proxy"
work="${1:-$(mktemp -d)}"
mkdir -p "$work" && cd "$work"
echo "working in $work"

step() { printf '\n### %s\n' "$*"; }

step "1. Keys and trust (on the air-gapped machine)"
"$airgap" keys generate --out root.key --role root
"$airgap" keys generate --out kernel.key --role kernel
"$airgap" keys generate --out lead.key --role support-lead
"$airgap" keys generate --out author.key --role policy-author
"$airgap" keys trust-root --anchor root.key --out trust-root.json
for k in "kernel.key kernel" "lead.key support-lead" "author.key policy-author"; do
  set -- $k
  "$airgap" keys publish --root root.key --trust-root trust-root.json --chain trust-chain.cbor --key "$1" --role "$2"
done
"$airgap" keys chain --chain trust-chain.cbor --trust-root trust-root.json

step "2. A signed policy bundle (its own test cases must pass)"
"$airgap" policy sign "$repo/guardian/examples/support-agent.toml" --key author.key -o support-agent.signed

step "3. Configuration and tokens"
agent_entry="$("$proxy" token new --principal support-7 --scope agent)"
lead_entry="$("$proxy" token new --principal lead-desk --scope approver)"
audit_entry="$("$proxy" token new --principal audit --scope auditor)"
AGENT="$(sed -n 2p <<<"$agent_entry" | cut -c3-)"
LEAD="$(sed -n 2p <<<"$lead_entry" | cut -c3-)"
AUDIT="$(sed -n 2p <<<"$audit_entry" | cut -c3-)"
{
  printf '[server]\nlisten = "127.0.0.1:0"\n\n[policy]\nbundles = ["support-agent.signed"]\n\n'
  grep -v '^#' <<<"$agent_entry"; echo
  grep -v '^#' <<<"$lead_entry"; echo
  grep -v '^#' <<<"$audit_entry"
} > helm-proxy.toml
"$proxy" check-config --config helm-proxy.toml | head -12

step "4. Start the server"
"$proxy" serve --config helm-proxy.toml > server.out 2> server.log &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until grep -q listening server.out 2>/dev/null; do sleep 0.1; done
URL="$(sed 's/.*listening on //' server.out)"
curl -s "$URL/healthz" | jq .

evaluate() {
  curl -s -H "Authorization: Bearer $AGENT" -H 'Content-Type: application/json' "$URL/v1/evaluate" -d "$1"
}

step "5. Calls: allowed, denied, escalated"
curl -s -o /dev/null -w 'no token: HTTP %{http_code}\n' "$URL/v1/evaluate" -d '{}'
small="$(evaluate '{"tool":"billing/refund","args":{"order_id":"A1","amount_cents":2500},"session":"t1"}')"
jq -c '{status,reason,rule}' <<<"$small"
evaluate '{"tool":"billing/refund","args":{"order_id":"A1","amount_cents":250000},"session":"t1"}' | jq -c '{status,reason,rule}'
large='{"tool":"billing/refund","args":{"order_id":"A2","amount_cents":25000},"session":"t1"}'
pending="$(evaluate "$large")"
jq -c '{status,reason,approval:{id:.approval.id,role:.approval.role,quorum:.approval.quorum}}' <<<"$pending"
ID="$(jq -r .approval.id <<<"$pending")"

step "6. The lead approves offline; only the signature travels"
curl -s -H "Authorization: Bearer $LEAD" "$URL/v1/approvals/$ID" | jq -c '{id,state,challenge}'
"$airgap" approve --key lead.key --id "$ID" --json > approval.json
curl -s -H "Authorization: Bearer $LEAD" -H 'Content-Type: application/json' \
  "$URL/v1/approvals/$ID" -d @approval.json | jq -c '{state,approvers}'

step "7. The same call, retried: now allowed"
granted="$(evaluate "$large")"
jq -c '{status,reason}' <<<"$granted"

step "8. Effects of the two allowed calls"
for answer in "$small" "$granted"; do
  curl -s -H "Authorization: Bearer $AGENT" -H 'Content-Type: application/json' "$URL/v1/effects" \
    -d "$(jq -c '{intent, status:"succeeded", output:"refund issued", meters:{duration_ms:40, cost:2500}}' <<<"$answer")" | jq -c .
done
curl -s -H "Authorization: Bearer $AUDIT" "$URL/metrics" | grep -E '^helm_(decisions|effects|approvals)_total'

step "9. Stop (SIGTERM: final CHECKPOINT), export a pack, verify it, replay its decisions"
kill -TERM $server && wait $server || true
tail -n 2 server.log
"$airgap" export --store helm-store --key kernel.key --trust-root trust-root.json -o run.tar.zst
"$airgap" verify run.tar.zst --trust-root trust-root.json
"$airgap" replay-decisions run.tar.zst --trust-root trust-root.json
