#!/usr/bin/env bash
# Soak test of lmpress serve on lmp-8m (loopback, bounded): SOAK_REQUESTS
# requests (default 10000) of every kind, dropped connections, a client that
# stops reading, a full queue; memory must not grow, the KV pool must end
# empty, and SIGTERM must exit 0. scripts/test.sh runs it with 1000.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/serve-lib.sh
BIN=${LMPRESS_BIN:-build/lmpress}
LOG=$(mktemp)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -f "$LOG"; }
trap cleanup EXIT
start_serve "$LOG" ../shared/models/lmp-8m -t 2 --parallel 2 --max-queue 24 --ctx-size 4096 --http-threads 64
LMPRESS_PORT=$PORT LMPRESS_PID=$PID timeout 1800 python3 scripts/soak_serve.py
kill -TERM "$PID"
status=0
wait "$PID" || status=$?
PID=
[ "$status" == 0 ] || { echo "serve exited $status after SIGTERM"; tail -20 "$LOG"; exit 1; }
echo "soak: SIGTERM exit 0"
