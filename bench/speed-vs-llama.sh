#!/usr/bin/env bash
# Speed side by side with llama.cpp's llama-bench on the same GGUF files:
# models with random weights in real shapes (lmpress make-model), each file
# type, pp512 and tg128 with 2 threads. Writes a Markdown table with the
# lmpress / llama.cpp ratio and the share of the memory-bandwidth bound.
# Usage: bench/speed-vs-llama.sh [SHAPES] [TYPES]
#   defaults: "smollm2-135m tinyllama-1.1b" "q4_0 q4_k_m q8_0 f16"; REPS (3), THREADS (2), P (512), N (128)
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPES=${1:-"smollm2-135m tinyllama-1.1b"}
TYPES=${2:-"q4_0 q4_k_m q8_0 f16"}
REPS=${REPS:-3}; THREADS=${THREADS:-2}; P=${P:-512}; N=${N:-128}
SHARED=$(cd ../shared && pwd)
LMP=$PWD/build/lmpress
BIN=$(bash "$SHARED/tools/build-llama-cpp.sh" | tail -1)
OUT=${OUT:-$PWD/bench/results/speed-vs-llama.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
{
  echo "| model | type | size (MiB) | test | llama.cpp t/s | lmpress t/s | lmpress / llama.cpp | lmpress % of bandwidth bound |"
  echo "|---|---|---:|---|---:|---:|---:|---:|"
} > "$OUT"
for s in $SHAPES; do
  for t in $TYPES; do
    f="$W/$s-$t.gguf"
    [ -f "$f" ] || "$LMP" make-model --shape "$s" --type "$t" "$f" > /dev/null
    "$BIN/llama-bench" -m "$f" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" -o json 2> /dev/null > "$W/llama.json"
    "$LMP" bench "$f" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" --json > "$W/lmp.json"
    python3 - "$s" "$t" "$f" "$W/llama.json" "$W/lmp.json" >> "$OUT" <<'PY'
import json, os, sys
shape, typ, f, lj, mj = sys.argv[1:]
llama, lmp = json.load(open(lj)), json.load(open(mj))
key = lambda r: (r["n_prompt"], r["n_gen"])
ref = {key(r): r for r in llama}
for r in lmp:
    l = ref[key(r)]
    test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
    share = f"{100 * r['bandwidth_bound_share']:.1f}%" if "bandwidth_bound_share" in r else "-"
    print(f"| {shape} | {typ} | {os.path.getsize(f) / 2**20:.1f} | {test} | {l['avg_ts']:.2f} ± {l['stddev_ts']:.2f} | "
          f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} | {r['avg_ts'] / l['avg_ts']:.2f} | {share} |")
PY
  done
done
cat "$OUT"
