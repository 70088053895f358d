#!/usr/bin/env bash
# Speed of the types llama-quantize writes and lmpress reads (the IQ codebook
# types, IQ4_XS, the ternary types) against llama-bench on the same files:
# a random-weight model in a real shape (lmpress make-model, f16), an imatrix
# of it from llama-imatrix (the IQ1/IQ2 types need one), llama-quantize to each
# type, then bench/speed-vs-llama.sh on those files (alternating the programs).
# Usage: bench/iq-speed-vs-llama.sh [SHAPES] [TYPES]
#   defaults: "tinyllama-1.1b" "iq4_xs iq3_s iq3_xxs iq2_s iq2_xs iq2_xxs iq1_m iq1_s tq2_0 tq1_0";
#   OUT (bench/results/iq-speed-vs-llama.md), and speed-vs-llama.sh's REPS, ROUNDS, P, N, THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPES=${1:-"tinyllama-1.1b"}
TYPES=${2:-"iq4_xs iq3_s iq3_xxs iq2_s iq2_xs iq2_xxs iq1_m iq1_s tq2_0 tq1_0"}
SHARED=$(cd ../shared && pwd)
BIN=$(bash "$SHARED/tools/build-llama-cpp.sh" | tail -1)
export WORK=${WORK:-$(mktemp -d)}
export OUT=${OUT:-$PWD/bench/results/iq-speed-vs-llama.md}
for s in $SHAPES; do
  f16="$WORK/$s-f16.gguf"
  [ -f "$f16" ] || build/lmpress make-model --shape "$s" --type f16 "$f16" > /dev/null
  im="$WORK/$s.imatrix.gguf"
  [ -f "$im" ] || "$BIN/llama-imatrix" -m "$f16" -f "$SHARED/data/calib/docs-calib.txt" -c 512 --chunks 2 -t "${THREADS:-2}" \
    -o "$im" > "$WORK/$s.imatrix.log" 2>&1
  for t in $TYPES; do
    f="$WORK/$s-$t.gguf"
    [ -f "$f" ] || "$BIN/llama-quantize" --imatrix "$im" "$f16" "$f" "$t" > "$WORK/$s-$t.quantize.log" 2>&1
  done
done
bash bench/speed-vs-llama.sh "$SHAPES" "$TYPES"
