#!/usr/bin/env bash
# The `lmpress compare` report for lmp-8m: the f32 original, RTN / GPTQ / AWQ
# quantizations and (when `lmpress prune` exists) pruned files, measured on
# wiki.test.raw (ctx 256) and the zero-shot tasks; calibration on other text
# (docs-calib.txt). Writes bench/results/compare-lmp-8m.{md,json,svg}.
# Usage: bench/compare-lmp-8m.sh [CHUNKS] [TASK_LIMIT]
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-100}
LIMIT=${2:-300}
SHARED=$(cd ../shared && pwd)
MODEL=$SHARED/models/lmp-8m
CALIB="--calib $SHARED/data/calib/docs-calib.txt --calib-samples 128 --calib-ctx 256"
LMP=$PWD/build/lmpress
OUT=${OUT:-$PWD/bench/results/compare-lmp-8m}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
q() { "$LMP" quantize "$W/f32.gguf" "$W/$1" "${@:2}" > /dev/null; }

"$LMP" convert "$MODEL" "$W/f32.gguf" --dtype f32 > /dev/null
q q4_0-rtn.gguf --type q4_0
q q4_0-gptq.gguf --type q4_0 --method gptq $CALIB
q q4_0-awq.gguf --type q4_0 --method awq $CALIB
q q2_k-rtn.gguf --type q2_k
q q2_k-awq.gguf --type q2_k --method awq $CALIB
q int3-g32-rtn --type int3-g32
q int3-g32-gptq --type int3-g32 --method gptq $CALIB
MODELS="f32.gguf q4_0-rtn.gguf q4_0-gptq.gguf q4_0-awq.gguf q2_k-rtn.gguf q2_k-awq.gguf int3-g32-rtn int3-g32-gptq"
if "$LMP" prune --help > /dev/null 2>&1; then
  p() { "$LMP" prune "$W/f32.gguf" "$W/$1" "${@:2}" > /dev/null; }
  p magnitude-50.gguf --method magnitude --sparsity 0.5
  p wanda-50.gguf --method wanda --sparsity 0.5 $CALIB
  p sparsegpt-50.gguf --method sparsegpt --sparsity 0.5 $CALIB
  p sparsegpt-2of4.gguf --method sparsegpt --nm 2:4 $CALIB
  p sparsegpt-50-q4_0.gguf --method sparsegpt --sparsity 0.5 --quantize q4_0 $CALIB
  p structured-20.gguf --structured layers=1,ffn=0.2 $CALIB
  MODELS="$MODELS magnitude-50.gguf wanda-50.gguf sparsegpt-50.gguf sparsegpt-2of4.gguf sparsegpt-50-q4_0.gguf structured-20.gguf"
fi
ARGS=""
for m in $MODELS; do ARGS="$ARGS $W/$m"; done
"$LMP" compare $ARGS -f "$SHARED/data/wikitext-2/wiki.test.raw" -c 256 --chunks "$CHUNKS" \
  --task-dir "$SHARED/data/tasks" --tasks arc_easy,piqa,lambada --limit "$LIMIT" --bench -p 256 -n 64 -r 3 \
  --labels "$(echo $MODELS | tr ' ' ',')" --title "lmp-8m: wiki.test.raw perplexity (ctx 256) against size" \
  --out "$OUT"
