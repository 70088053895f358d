#!/usr/bin/env bash
# Real clients against `lmpress serve` on lmp-8m: curl, Python's http.client
# and requests, and the official OpenAI Node client (npm install openai into
# tests/clients). The server is on 127.0.0.1 with a free port, and stopped
# with SIGTERM at the end, which must exit 0.
# Usage: bash scripts/test-serve-clients.sh   (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/serve-lib.sh
BIN=${LMPRESS_BIN:-build/lmpress}
MODEL=../shared/models/lmp-8m
KEY=test-key-$$
LOG=$(mktemp)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -f "$LOG"; }
trap cleanup EXIT

if [ ! -d tests/clients/node_modules/openai ]; then
  (cd tests/clients && npm install --no-audit --no-fund --silent)
fi

EXPECTED=$("$BIN" generate "$MODEL" -p "Once upon a time" -n 24 --ignore-eos --json -t 2 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["text"], end="")')

start_serve "$LOG" "$MODEL" -t 2 --api-key "$KEY" --chat-template chatml
echo "lmpress serve on port $PORT"

fail() { echo "curl: FAILED: $1"; exit 1; }
body='{"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "ignore_eos": true}'
got=$(curl -sf "http://127.0.0.1:$PORT/v1/completions" -H "Authorization: Bearer $KEY" -d "$body" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["choices"][0]["text"], end="")')
[ "$got" == "$EXPECTED" ] || fail "greedy text differs from lmpress generate's: '$got' vs '$EXPECTED'"
echo "curl: ok: greedy text equals lmpress generate's"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/models")
[ "$code" == 401 ] || fail "no key gave $code, not 401"
echo "curl: ok: no key is 401"
streamed=$(curl -sfN "http://127.0.0.1:$PORT/v1/completions" -H "Authorization: Bearer $KEY" \
  -d "${body%\}}, \"stream\": true}" | python3 -c '
import json, sys
t = ""
for line in sys.stdin:
    if line.startswith("data: ") and line.strip() != "data: [DONE]":
        t += json.loads(line[6:])["choices"][0]["text"]
print(t, end="")')
[ "$streamed" == "$EXPECTED" ] || fail "streamed text differs"
echo "curl: ok: streamed text equals lmpress generate's"

LMPRESS_PORT=$PORT LMPRESS_API_KEY=$KEY LMPRESS_EXPECTED=$EXPECTED python3 tests/clients/python_client.py
LMPRESS_BASE_URL="http://127.0.0.1:$PORT/v1" LMPRESS_API_KEY=$KEY LMPRESS_EXPECTED=$EXPECTED \
  node tests/clients/openai_client.mjs

kill -TERM "$PID"
status=0
wait "$PID" || status=$?
PID=
[ "$status" == 0 ] || { echo "serve exited $status after SIGTERM"; cat "$LOG"; exit 1; }
echo "serve-clients: all passed; SIGTERM exit 0"
