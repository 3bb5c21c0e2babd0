#!/usr/bin/env bash
# Contract fuzzing: schemathesis (from PyPI, in a virtualenv under target/) against a freshly started server's
# /openapi.json. Fails on any 5xx and on any response that does not match the documented schema.
#   scripts/contract-fuzz.sh [BINARY] [EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-./target/debug/switchboard}
examples=${2:-25}
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis==4.32.5'
fi
scratch=$(mktemp -d)
port=19$((RANDOM % 900 + 100))
"$binary" --database "sqlite://$scratch/fuzz.db" --listen "127.0.0.1:$port" --rate-limit 0 >"$scratch/out.log" 2>"$scratch/err.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$scratch"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
key=$(grep -o 'sbk_[A-Za-z0-9_]*' "$scratch/out.log")
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples "$examples" --generation-deterministic
