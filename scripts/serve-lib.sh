# Sourced by the serve test scripts. start_serve LOG ARGS...: starts
# `$BIN serve ARGS... --host 127.0.0.1 --port 0` with stderr in LOG, waits for
# /health, and sets PID and PORT; exits 1 (printing LOG) when it does not come up.
start_serve() {
  local log=$1
  shift
  "$BIN" serve "$@" --host 127.0.0.1 --port 0 2>"$log" &
  PID=$!
  PORT=
  for _ in $(seq 300); do
    PORT=$(sed -n 's|.* on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$log")
    [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0
    sleep 0.1
  done
  echo "serve did not start:"
  cat "$log"
  exit 1
}
