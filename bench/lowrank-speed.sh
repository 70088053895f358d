#!/usr/bin/env bash
# What a factorized model (`lmpress lowrank`) gains in speed: the smollm2-360m
# shape (random weights, make-model) dense against `lowrank --method svd
# --ratio R` (every block linear W [out, in] as B [out, r]·A [r, in], run as two
# matmuls), both in F16 and in Q8_0 (the factors' type via --factor-type),
# benchmarked alternately with `lmpress bench` (pp512 and tg64, 2 threads). The
# speed of a factorized linear depends on its rank, not on its values, so
# random weights measure it (their quality is meaningless: see
# bench/lowrank-table.sh for that).
# Usage: bench/lowrank-speed.sh [ROUNDS] [RATIO]   (writes bench/results/lowrank-speed.md)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
RATIO=${2:-0.4}
SHAPE=${SHAPE:-smollm2-360m}
LMP=${LMP:-$PWD/build/lmpress}
OUT=${OUT:-$PWD/bench/results/lowrank-speed.md}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$LMP" make-model "$W/f16.gguf" --shape "$SHAPE" --type f16 > /dev/null
"$LMP" convert "$W/f16.gguf" "$W/q8_0.gguf" --dtype q8_0 > /dev/null
"$LMP" lowrank "$W/f16.gguf" "$W/lr-f16.gguf" --method svd --ratio "$RATIO" --factor-type f16 > /dev/null
"$LMP" lowrank "$W/f16.gguf" "$W/lr-q8_0.gguf" --method svd --ratio "$RATIO" --factor-type q8_0 > /dev/null
run() {  # file -> "pp tg" tokens/s
  "$LMP" bench "$W/$1.gguf" -p 512 -n 64 -r 1 -t 2 --no-bandwidth --json |
    python3 -c 'import json,sys; print(" ".join(str(t["avg_ts"]) for t in json.load(sys.stdin)))'
}
for f in f16 lr-f16 q8_0 lr-q8_0; do : > "$W/$f.txt"; done
for _ in $(seq "$ROUNDS"); do
  for f in f16 lr-f16 q8_0 lr-q8_0; do run $f >> "$W/$f.txt"; done
done
{
  echo "# Factorized linears (lowrank svd, each linear −$(python3 -c "print(round($RATIO * 100))")% parameters) against dense: $SHAPE shape"
  echo
  echo "\`bench/lowrank-speed.sh $ROUNDS $RATIO\`, $(date -u +%Y-%m-%d). CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
  echo "2 threads; flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx_vnni|fma|f16c)$' | tr '\n' ' ')."
  echo "Random weights (\`make-model --shape $SHAPE\`); tokens/s, mean ± sd of $ROUNDS alternating runs; file bytes."
  echo
  echo "| type | test | dense (t/s) | factorized (t/s) | speedup | dense bytes | factorized bytes |"
  echo "|---|---|--:|--:|--:|--:|--:|"
  python3 - "$W" <<'EOF'
import os, statistics, sys
w = sys.argv[1]
def cols(name):
    rows = [list(map(float, l.split())) for l in open(f"{w}/{name}.txt") if l.strip()]
    return [[r[i] for r in rows] for i in range(2)]
def fmt(v):
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0:.2f}"
for t in ["f16", "q8_0"]:
    d, f = cols(t), cols("lr-" + t)
    for i, test in enumerate(["pp512", "tg64"]):
        print(f"| {t} | {test} | {fmt(d[i])} | {fmt(f[i])} | {statistics.mean(f[i]) / statistics.mean(d[i]):.2f} | "
              f"{os.path.getsize(f'{w}/{t}.gguf')} | {os.path.getsize(f'{w}/lr-{t}.gguf')} |")
EOF
} > "$OUT"
cat "$OUT"
