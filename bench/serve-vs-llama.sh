#!/usr/bin/env bash
# Serving side by side with llama.cpp's llama-server on the same GGUF files:
# `lmpress bench-serve --json` (streaming /v1/completions, token-id prompts,
# ignore_eos) against `lmpress serve` and against `llama-server`, each started
# alone on loopback for its round and stopped after it, rounds alternating
# (lmpress, llama, lmpress, llama, ...) at each concurrency. Writes a Markdown
# table: the CPU, aggregate generation tokens/s of each, their ratio, p95 TTFT.
# Usage: bench/serve-vs-llama.sh [MODEL.gguf ...]
#   default: smollm2-135m and tinyllama-1.1b shapes in Q4_K_M with random weights (lmpress make-model)
# Env: THREADS (2), PARALLEL (4: server slots, llama-server -np and lmpress serve --parallel), CONCURRENCY ("4 16"),
#   REQUESTS (32), PROMPT (128 ids), MAXTOK (32), ROUNDS (2: rounds of each program per concurrency),
#   CTX (PARALLEL * (PROMPT + MAXTOK + 64), the whole server's context as llama-server counts it),
#   SERVERS ("lmpress llama"; a program whose server is missing is skipped with a note), OUT, WORK, LMP (build/lmpress),
#   LLAMA_BIN (llama-server's directory; default: the peer build). To stand in for an AVX2-only host on a wider
#   CPU: LMPRESS_ISA=avx2 and LLAMA_BIN pointing at a llama.cpp built with GGML_AVX512=OFF; the table names both.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; PARALLEL=${PARALLEL:-4}; CONCURRENCY=${CONCURRENCY:-"4 16"}
REQUESTS=${REQUESTS:-32}; PROMPT=${PROMPT:-128}; MAXTOK=${MAXTOK:-32}; ROUNDS=${ROUNDS:-2}
CTX=${CTX:-$((PARALLEL * (PROMPT + MAXTOK + 64)))}
SERVERS=${SERVERS:-"lmpress llama"}
LMP=${LMP:-$PWD/build/lmpress}
BIN=${LLAMA_BIN:-$(bash ../shared/tools/build-llama-cpp.sh | tail -1)}
OUT=${OUT:-$PWD/bench/results/serve-vs-llama.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
cut -d' ' -f1-3 /proc/loadavg > "$W/loadavg.start"
# Servers whose threads take every core collapse when anything else runs: on the 2-core VM, llama-server -t 2 beside
# one busy process generated 1-7 tokens/s where -t 1 gave 90 (ggml's threads wait for each other spinning).
if awk -v t="$THREADS" -v n="$(nproc)" '{ exit !($1 >= 0.5 && t >= n) }' /proc/loadavg; then
  echo "warning: load average $(cut -d' ' -f1 /proc/loadavg) with THREADS=$THREADS on $(nproc) CPUs: the numbers will be distorted" >&2
fi

MODELS=("$@")
if [ ${#MODELS[@]} -eq 0 ]; then
  for s in smollm2-135m tinyllama-1.1b; do
    f="$W/$s-q4_k_m.gguf"
    [ -f "$f" ] || "$LMP" make-model --shape "$s" --type q4_k_m "$f" > /dev/null
    MODELS+=("$f")
  done
fi

have_lmpress_serve() { "$LMP" --help 2> /dev/null | grep -qE '^ +serve +'; }
have_llama_server() { [ -x "$BIN/llama-server" ]; }
RUN=()
for p in $SERVERS; do
  case $p in
    lmpress) if have_lmpress_serve; then RUN+=(lmpress); else echo "note: $LMP has no 'serve' command: lmpress skipped" >&2; fi ;;
    llama) if have_llama_server; then RUN+=(llama); else echo "note: no $BIN/llama-server: llama-server skipped" >&2; fi ;;
    *) echo "SERVERS: unknown program '$p' (lmpress, llama)" >&2; exit 1 ;;
  esac
done
[ ${#RUN[@]} -gt 0 ] || { echo "no server to measure" >&2; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2> /dev/null || true
    wait "$SERVER_PID" 2> /dev/null || true
    SERVER_PID=
  fi
}
trap stop_server EXIT

# start_server PROGRAM MODEL PORT LOG: starts it in the background and waits for GET /health to answer 200.
start_server() {
  local prog=$1 model=$2 port=$3 log=$4
  case $prog in
    lmpress) "$LMP" serve "$model" --host 127.0.0.1 --port "$port" -t "$THREADS" --parallel "$PARALLEL" \
               --ctx-size "$CTX" > "$log" 2>&1 & ;;
    llama) LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$BIN/llama-server" -m "$model" \
             -np "$PARALLEL" -cb -t "$THREADS" --host 127.0.0.1 --port "$port" -c "$CTX" --no-webui > "$log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    if ! kill -0 "$SERVER_PID" 2> /dev/null; then
      echo "$prog server exited before it was ready; its log ($log):" >&2
      tail -20 "$log" >&2
      SERVER_PID=
      exit 1
    fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ]; then return 0; fi
    sleep 0.5
  done
  echo "$prog server not healthy after 300 s; its log ($log):" >&2
  tail -20 "$log" >&2
  exit 1
}

for m in "${MODELS[@]}"; do
  name=$(basename "$m" .gguf)
  for c in $CONCURRENCY; do
    for r in $(seq 1 "$ROUNDS"); do
      for prog in "${RUN[@]}"; do
        port=$(free_port)
        start_server "$prog" "$m" "$port" "$W/$prog.$name.c$c.r$r.log"
        url="http://127.0.0.1:$port"
        # Warm-up (not measured): the first requests fault the weights in.
        "$LMP" bench-serve "$url" --concurrency 2 --requests 2 --prompt-len 16 --max-tokens 4 --json > /dev/null
        echo "$name: $prog, concurrency $c, round $r" >&2
        "$LMP" bench-serve "$url" --concurrency "$c" --requests "$REQUESTS" --prompt-len "$PROMPT" \
          --max-tokens "$MAXTOK" --seed "$r" --json > "$W/$prog.$name.c$c.r$r.json"
        stop_server
      done
    done
  done
done

cut -d' ' -f1-3 /proc/loadavg > "$W/loadavg.end"
# What each program ran on: lmpress's kernel target as its server logged it, the x86 features llama.cpp was built
# with (its build directory's CMake cache).
{ grep -ho 'kernels: [a-z0-9-]*' "$W"/lmpress.*.log 2> /dev/null | head -1 | cut -d' ' -f2 || true; } > "$W/isa.lmpress"
{ grep -oE '^GGML_(AVX[A-Z0-9_]*|FMA|F16C|BMI2):BOOL=ON' "$BIN/../CMakeCache.txt" 2> /dev/null \
    | sed 's/^GGML_//; s/:BOOL=ON//' | tr '\n' ' ' || true; } > "$W/isa.llama"
python3 - "$W" "$ROUNDS" "$THREADS" "$PARALLEL" "$CTX" "$REQUESTS" "$PROMPT" "$MAXTOK" "$CONCURRENCY" "${MODELS[@]}" \
  > "$OUT" <<'PY'
import json, os, re, statistics, subprocess, sys
w, rounds, threads, parallel, ctx, requests, prompt, maxtok, conc = sys.argv[1:10]
models = sys.argv[10:]
cpu, flags = "unknown CPU", set()
for line in open("/proc/cpuinfo"):
    if line.startswith("model name") and cpu == "unknown CPU":
        cpu = line.split(":", 1)[1].strip()
    if line.startswith("flags"):
        flags = set(line.split(":", 1)[1].split())
try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cores = re.search(r"^CPU\(s\):\s*(\d+)", lscpu, re.M).group(1)
except Exception:
    cores = str(os.cpu_count())
simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni",
                    "avx512_bf16", "amx_tile", "asimd", "asimddp", "i8mm") if f in flags]
print(f"CPU: {cpu}, {cores} CPUs; flags: {' '.join(simd) or '-'}\n")
load = [open(f"{w}/loadavg.{k}").read().strip() for k in ("start", "end")]
print(f"Load average (1, 5, 15 min) before: {load[0]}, after: {load[1]}.\n")
isa = {k: open(f"{w}/isa.{k}").read().strip() or "-" for k in ("lmpress", "llama")}
print(f"Kernels: lmpress target {isa['lmpress']}" + (f" (LMPRESS_ISA={os.environ['LMPRESS_ISA']})" if os.environ.get("LMPRESS_ISA") else "")
      + f"; llama.cpp built with {isa['llama']}.\n")
print(f"Servers: {threads} threads, {parallel} slots, context {ctx}; each round {requests} requests of {prompt} "
      f"prompt ids and {maxtok} generated tokens (ignore_eos), mean of {rounds} rounds each, rounds alternating.\n")
print("| model | concurrency | llama-server gen tok/s | lmpress gen tok/s | lmpress / llama | "
      "llama-server p95 TTFT (ms) | lmpress p95 TTFT (ms) | errors (llama, lmpress) |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
def load(prog, name, c):
    runs = []
    for r in range(1, int(rounds) + 1):
        f = f"{w}/{prog}.{name}.c{c}.r{r}.json"
        if os.path.exists(f):
            runs.append(json.load(open(f)))
    return runs
def stat(runs, key):
    vals = [key(j) for j in runs if key(j) is not None]
    if not vals:
        return None, "-"
    m = statistics.mean(vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return m, f"{m:.1f} ± {sd:.1f}"
for mpath in models:
    name = os.path.basename(mpath)[:-5] if mpath.endswith(".gguf") else os.path.basename(mpath)
    for c in conc.split():
        llama, lmp = load("llama", name, c), load("lmpress", name, c)
        lg, lg_s = stat(llama, lambda j: j["gen_tokens_per_s"])
        mg, mg_s = stat(lmp, lambda j: j["gen_tokens_per_s"])
        _, lt_s = stat(llama, lambda j: j["ttft_ms"]["p95"])
        _, mt_s = stat(lmp, lambda j: j["ttft_ms"]["p95"])
        ratio = f"{mg / lg:.2f}" if lg and mg else "-"
        errs = lambda runs: str(sum(j["errors"] for j in runs)) if runs else "-"
        print(f"| {name} | {c} | {lg_s} | {mg_s} | {ratio} | {lt_s} | {mt_s} | {errs(llama)}, {errs(lmp)} |")
PY
cat "$OUT"
