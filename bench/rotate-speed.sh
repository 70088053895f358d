#!/usr/bin/env bash
# What R4's online rotation (a Hadamard transform of ffn_down's input at every
# token) costs: the same random-weight model rotated with R1+R2 only
# (`--rotate hadamard:0`, an ordinary file) and with R4 (`hadamard:0,r4`),
# both quantized to Q4_0 by RTN, benchmarked alternately with `lmpress bench`
# (pp512 and tg64, 2 threads). Shapes: tinyllama-1.1b (ffn 5632 = 44·128: the
# Paley mix of 44 blocks) and llama-3.2-1b (ffn 8192, a power of two).
# Usage: bench/rotate-speed.sh [ROUNDS]   (writes bench/results/rotate-speed.md)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
LMP=${LMP:-$PWD/build/lmpress}
OUT=${OUT:-$PWD/bench/results/rotate-speed.md}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
rows=()
for shape in tinyllama-1.1b llama-3.2-1b; do
  "$LMP" make-model "$W/f16.gguf" --shape $shape --type f16 > /dev/null
  "$LMP" quantize "$W/f16.gguf" "$W/r12.gguf" --type q4_0 --rotate hadamard:0 > /dev/null
  "$LMP" quantize "$W/f16.gguf" "$W/r4.gguf" --type q4_0 --rotate hadamard:0,r4 > /dev/null
  rm -f "$W/f16.gguf"
  : > "$W/r12.txt"; : > "$W/r4.txt"
  for _ in $(seq "$ROUNDS"); do
    for f in r12 r4; do
      "$LMP" bench "$W/$f.gguf" -p 512 -n 64 -r 1 -t 2 --no-bandwidth --json |
        python3 -c 'import json,sys; print(" ".join(str(t["avg_ts"]) for t in json.load(sys.stdin)))' >> "$W/$f.txt"
    done
  done
  rows+=("$(python3 - "$shape" "$W/r12.txt" "$W/r4.txt" <<'EOF'
import statistics, sys
shape, a, b = sys.argv[1:]
def cols(p):
    rows = [list(map(float, l.split())) for l in open(p) if l.strip()]
    return [[r[i] for r in rows] for i in range(2)]
r12, r4 = cols(a), cols(b)
out = []
for i, name in enumerate(["pp512", "tg64"]):
    m12, m4 = statistics.mean(r12[i]), statistics.mean(r4[i])
    s12 = statistics.stdev(r12[i]) if len(r12[i]) > 1 else 0
    s4 = statistics.stdev(r4[i]) if len(r4[i]) > 1 else 0
    out.append(f"| {shape} | {name} | {m12:.2f} ± {s12:.2f} | {m4:.2f} ± {s4:.2f} | {m4 / m12:.3f} |")
print("\n".join(out))
EOF
)")
  rm -f "$W"/*.gguf
done
{
  echo "# R4's run-time cost: Q4_0, R1+R2 against R1+R2+R4"
  echo
  echo "\`bench/rotate-speed.sh $ROUNDS\`, $(date -u +%Y-%m-%d). CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
  echo "2 threads; flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx_vnni|fma|f16c)$' | tr '\n' ' ')."
  echo "Random weights (\`make-model\`), RTN; tokens/s, mean ± sd of $ROUNDS alternating runs."
  echo
  echo "| shape | test | R1+R2 (t/s) | R1+R2+R4 (t/s) | ratio |"
  echo "|---|---|--:|--:|--:|"
  printf '%s\n' "${rows[@]}"
} > "$OUT"
cat "$OUT"
