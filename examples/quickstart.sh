#!/usr/bin/env bash
# Builds a lead-nurture workflow on a running Switchboard, enrols examples/leads/quickstart.csv, activates it,
# waits until every lead is final and prints one line per lead: phone, status, path taken, calls placed.
#
#   SWITCHBOARD_URL      server address (default http://127.0.0.1:8080)
#   SWITCHBOARD_API_KEY  API key printed by the server's first start or by `switchboard keys create`
#   QUICKSTART_WAIT_MINUTES  length of the wait between the two calls (default 1440, one day)
#
# Needs bash, curl and jq. Run the server with SWITCHBOARD_TIME_SCALE=86400 to see a day pass in a second.
set -euo pipefail

URL="${SWITCHBOARD_URL:-http://127.0.0.1:8080}"
KEY="${SWITCHBOARD_API_KEY:?set SWITCHBOARD_API_KEY to your API key}"
WAIT_MINUTES="${QUICKSTART_WAIT_MINUTES:-1440}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FROM="+12015550100"

for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "quickstart: $tool is required (apt-get install $tool)" >&2; exit 1; }
done

# api METHOD PATH [JSON]: prints the response body; exits on a non-2xx status.
api() {
  local method=$1 path=$2 body=${3:-} out status
  out=$(mktemp)
  if [ -n "$body" ]; then
    status=$(curl -sS -o "$out" -w '%{http_code}' -X "$method" "$URL$path" \
      -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$body")
  else
    status=$(curl -sS -o "$out" -w '%{http_code}' -X "$method" "$URL$path" -H "Authorization: Bearer $KEY")
  fi
  if [ "${status:0:1}" != 2 ]; then
    echo "quickstart: $method $path answered $status: $(cat "$out")" >&2
    rm -f "$out"
    exit 1
  fi
  cat "$out"
  rm -f "$out"
}

node() { # node WORKFLOW TYPE LABEL CONFIG → node id
  api POST "/v1/workflows/$1/nodes" "$(jq -nc --arg t "$2" --arg l "$3" --argjson c "$4" \
    '{node_type: $t, label: $l, config: $c}')" | jq -r .id
}

edge() { # edge WORKFLOW FROM TO [LABEL]
  api POST "/v1/workflows/$1/edges" "$(jq -nc --arg f "$2" --arg t "$3" --arg l "${4:-}" \
    '{from_node_id: $f, to_node_id: $t} + (if $l == "" then {} else {label: $l} end)')" >/dev/null
}

echo "== agent and caller ID"
AGENT=$(api POST /v1/agents '{"name": "Loan follow-up", "prompt": "Hi {{name}}, this is about your {{product}} enquiry."}' | jq -r .id)
if [ "$(api GET /v1/phone-numbers?limit=100 | jq --arg n "$FROM" '[.data[] | select(.phone_number == $n)] | length')" = 0 ]; then
  api POST /v1/phone-numbers "{\"phone_number\": \"$FROM\", \"label\": \"Main line\", \"allowed_destination_countries\": [\"US\", \"IN\", \"GB\"]}" >/dev/null
fi
echo "agent $AGENT, calling from $FROM"

echo "== workflow"
WF=$(api POST /v1/workflows '{"title": "Lead nurture", "description": "Call, wait, call again, branch on interest."}' | jq -r .id)
CALL=$(jq -nc --arg a "$AGENT" --arg f "$FROM" '{agent_id: $a, from_phone_number: $f}')
FIRST=$(node "$WF" VOICE_CALL "First call" "$CALL")
WAIT=$(node "$WF" TIME "Wait" "{\"delay_minutes\": $WAIT_MINUTES}")
SECOND=$(node "$WF" VOICE_CALL "Second call" "$CALL")
CHECK=$(node "$WF" CONDITIONAL "Interested?" \
  '{"logic": "AND", "conditions": [{"field": "call.analysis.interest", "operator": "equals", "value": "yes"}]}')
WON=$(node "$WF" CONVERTED "Converted" '{}')
LOST=$(node "$WF" DROPPED "Dropped" '{}')
edge "$WF" "$FIRST" "$CHECK" COMPLETED
edge "$WF" "$FIRST" "$WAIT" NO_ANSWER
edge "$WF" "$FIRST" "$WAIT" BUSY
edge "$WF" "$FIRST" "$LOST"
edge "$WF" "$WAIT" "$SECOND"
edge "$WF" "$SECOND" "$CHECK" COMPLETED
edge "$WF" "$SECOND" "$LOST"
edge "$WF" "$CHECK" "$WON" true
edge "$WF" "$CHECK" "$LOST" false
echo "workflow $WF: $(api POST "/v1/workflows/$WF/validate" | jq -c .)"

echo "== enrol and activate"
curl -sS --fail-with-body -H "Authorization: Bearer $KEY" -F "file=@$HERE/leads/quickstart.csv" "$URL/v1/workflows/$WF/leads" | jq -r .message
api POST "/v1/workflows/$WF/activate" | jq -r '"status: \(.status)"'

echo "== waiting for every lead to finish"
started=$(date +%s)
while :; do
  counts=$(api GET "/v1/workflows/$WF" | jq -c .lead_counts)
  open=$(jq '.pending + .in_progress' <<<"$counts")
  [ "$open" = 0 ] && break
  if [ $(( $(date +%s) - started )) -gt 600 ]; then
    echo "quickstart: leads still running after 10 minutes ($counts); is SWITCHBOARD_TIME_SCALE set?" >&2
    exit 1
  fi
  sleep 1
done
echo "$counts"

echo "== leads"
printf '%-15s %-10s %-6s %s\n' PHONE STATUS CALLS PATH
api GET "/v1/workflows/$WF/leads?limit=100" | jq -r '.data | reverse | .[] | [.id, .phone_number, .status] | @tsv' |
  while IFS=$'\t' read -r id phone status; do
    path=$(api GET "/v1/workflows/$WF/leads/$id/history" | jq -r '[.history[].node_label] | join(" -> ")')
    calls=$(api GET "/v1/calls?workflow_lead_id=$id&limit=100" | jq -r .meta.total)
    printf '%-15s %-10s %-6s %s\n' "$phone" "$status" "$calls" "$path"
  done
