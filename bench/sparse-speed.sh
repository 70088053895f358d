#!/usr/bin/env bash
# Decoding speed of sparse F16 weights against the dense layout of the same
# file: a tinyllama-1.1b-shaped model (make-model, F16) pruned by magnitude to
# 2:4 and to 70% unstructured (and to 2:4 with Q8_0), benchmarked by `lmpress bench` with the layout
# repacked at load (F16_2of4, F16_bitmap, Q8_0_2of4_x8) and with --dense (the
# same weights, dense), alternating, same script; the unpruned files for scale;
# and a structurally pruned F16 file (smaller matrices) against the unpruned one.
# Usage: bench/sparse-speed.sh [SHAPE] [REPS]   (writes bench/results/sparse-speed.md)
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPE=${1:-tinyllama-1.1b}
REPS=${2:-3}
LMP=$PWD/build/lmpress
OUT=${OUT:-$PWD/bench/results/sparse-speed.md}
W=${WORK:-$(mktemp -d)}
[ -n "${WORK:-}" ] || trap 'rm -rf "$W"' EXIT
[ -f "$W/$SHAPE-f16.gguf" ] || "$LMP" make-model --shape "$SHAPE" --type f16 "$W/$SHAPE-f16.gguf" > /dev/null
[ -f "$W/$SHAPE-f16-2of4.gguf" ] || "$LMP" prune "$W/$SHAPE-f16.gguf" "$W/$SHAPE-f16-2of4.gguf" --nm 2:4 > /dev/null
[ -f "$W/$SHAPE-q8_0.gguf" ] || "$LMP" make-model --shape "$SHAPE" --type q8_0 "$W/$SHAPE-q8_0.gguf" > /dev/null
[ -f "$W/$SHAPE-q8-2of4.gguf" ] || "$LMP" prune "$W/$SHAPE-f16.gguf" "$W/$SHAPE-q8-2of4.gguf" --nm 2:4 --quantize q8_0 > /dev/null
[ -f "$W/$SHAPE-f16-s70.gguf" ] || "$LMP" prune "$W/$SHAPE-f16.gguf" "$W/$SHAPE-f16-s70.gguf" --sparsity 0.7 > /dev/null
# Structured: a quarter of the KV-head groups and 30% of the MLP channels, scored on a little text (the weights are
# random, so the scores only decide which ones go; the speed depends on the sizes).
CALIB=$(cd ../shared && pwd)/data/calib/docs-calib.txt
[ -f "$W/$SHAPE-f16-struct.gguf" ] || "$LMP" prune "$W/$SHAPE-f16.gguf" "$W/$SHAPE-f16-struct.gguf" \
  --structured heads=0.25,ffn=0.3 --calib "$CALIB" --calib-samples 4 --calib-ctx 128 > /dev/null
tg() {  # file [--dense] -> "avg stddev"
  "$LMP" bench "$1" -p 0 -n 64 -r "$REPS" -t 2 --json --no-bandwidth ${2:-} |
    python3 -c 'import json,sys; t=json.load(sys.stdin)[0]; print("%.2f %.2f" % (t["avg_ts"], t["stddev_ts"]))'
}
{
  echo "| model | weights | layout | tg64 t/s | speedup vs dense layout |"
  echo "|---|---|---|--:|--:|"
  row() {  # file, weights, layout [, dense type]
    d=$(tg "$1" --dense)
    s=$(tg "$1")
    echo "| $SHAPE | $2 | dense ${4:-F16} (--dense) | ${d% *} ± ${d#* } | 1.00 |"
    echo "| $SHAPE | $2 | $3 (repacked at load) | ${s% *} ± ${s#* } | $(python3 -c "print('%.2f' % (${s% *} / ${d% *}))") |"
  }
  for round in 1 2; do
    f=$(tg "$W/$SHAPE-f16.gguf")
    echo "| $SHAPE | F16, unpruned | dense F16 | ${f% *} ± ${f#* } | |"
    row "$W/$SHAPE-f16-2of4.gguf" "F16, 2:4-pruned" F16_2of4
    row "$W/$SHAPE-f16-s70.gguf" "F16, 70%-pruned" F16_bitmap
    q=$(tg "$W/$SHAPE-q8_0.gguf")
    echo "| $SHAPE | Q8_0, unpruned | dense Q8_0 | ${q% *} ± ${q#* } | |"
    row "$W/$SHAPE-q8-2of4.gguf" "Q8_0, 2:4-pruned" Q8_0_2of4_x8 Q8_0
    st=$(tg "$W/$SHAPE-f16-struct.gguf")
    echo "| $SHAPE | F16, structured heads=0.25,ffn=0.3 | dense F16 (smaller matrices) | ${st% *} ± ${st#* } | $(python3 -c "print('%.2f' % (${st% *} / ${f% *}))") vs unpruned |"
  done
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
