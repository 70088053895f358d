#!/usr/bin/env bash
# The main job on the default model: inspect it, convert it to GGUF (f32 and
# f16), quantize it to Q4_K_M and Q3_K_M with RTN (llama-quantize's result),
# GPTQ and AWQ (calibrated on other text) and to a GPTQ int4-g32 checkpoint for
# GPU engines, prune it with SparseGPT (2:4, and 50% jointly with Q4_0), generate a
# little text, and print the comparison (`lmpress compare`: size, PPL, ΔPPL, KLD,
# top-1 agreement, zero-shot tasks) with a Markdown/JSON/SVG report.
# Model: $LMPRESS_MODEL, else ../shared/models/lmp-8m, else HuggingFaceTB/SmolLM2-135M from the hub.
# Text:  $LMPRESS_TEXT, else ../shared/data/wikitext-2/wiki.test.raw.
set -euo pipefail
cd "$(dirname "$0")/.."
LMP=build/lmpress
MODEL="${LMPRESS_MODEL:-}"
if [ -z "$MODEL" ]; then
  if [ -d ../shared/models/lmp-8m ]; then MODEL=../shared/models/lmp-8m
  else $LMP pull HuggingFaceTB/SmolLM2-135M; MODEL=HuggingFaceTB/SmolLM2-135M; fi
fi
TEXT="${LMPRESS_TEXT:-../shared/data/wikitext-2/wiki.test.raw}"
CALIB="${LMPRESS_CALIB:-../shared/data/calib/docs-calib.txt}"
[ -f "$TEXT" ] || { echo "demo: evaluation text $TEXT not found; set LMPRESS_TEXT" >&2; exit 1; }
CTX="${LMPRESS_CTX:-256}"; CHUNKS="${LMPRESS_CHUNKS:-40}"
OUT="${LMPRESS_OUT:-out/demo}"; mkdir -p "$OUT"

$LMP info "$MODEL" --no-tensors
$LMP convert "$MODEL" "$OUT/model-f32.gguf" --dtype f32
$LMP convert "$MODEL" "$OUT/model-f16.gguf" --dtype f16
VARIANTS="f32 f16"
for t in q4_k_m q3_k_m; do
  for m in rtn gptq awq; do
    extra=""; [ "$m" != rtn ] && extra="--calib $CALIB --calib-samples 64 --calib-ctx $CTX"
    echo "quantize $t --method $m"
    $LMP quantize "$OUT/model-f32.gguf" "$OUT/model-$t-$m.gguf" --type $t --method $m $extra | tail -2
    VARIANTS="$VARIANTS $t-$m"
  done
done
echo "quantize int4-g32 --method gptq (GPTQ safetensors directory)"
rm -rf "$OUT/model-int4-g32-gptq"
$LMP quantize "$MODEL" "$OUT/model-int4-g32-gptq" --type int4-g32 --method gptq \
  --calib "$CALIB" --calib-samples 64 --calib-ctx "$CTX" | tail -2
for p in "--nm 2:4 sparsegpt-2of4" "--sparsity 0.5 --quantize q4_0 sparsegpt-50-q4_0"; do
  name=${p##* }; args=${p% *}
  echo "prune --method sparsegpt $args"
  $LMP prune "$OUT/model-f32.gguf" "$OUT/model-$name.gguf" --method sparsegpt $args \
    --calib "$CALIB" --calib-samples 64 --calib-ctx "$CTX" | tail -2
done
echo
$LMP generate "$OUT/model-f16.gguf" -p "The kernel scheduler" -n 48
echo
# The comparison: size, bits/weight, PPL, its change and the KL divergence from the original, top-1 agreement,
# two zero-shot tasks; report.md / report.json / report.svg (PPL against size) in $OUT.
FILES="$OUT/model-f32.gguf"; LABELS="f32"
for v in $VARIANTS; do [ "$v" = f32 ] || { FILES="$FILES $OUT/model-$v.gguf"; LABELS="$LABELS,$v"; }; done
FILES="$FILES $OUT/model-int4-g32-gptq $OUT/model-sparsegpt-2of4.gguf $OUT/model-sparsegpt-50-q4_0.gguf"
LABELS="$LABELS,int4-g32-gptq,sparsegpt-2:4,sparsegpt-50%+q4_0"
TASKS=""
[ -d "${LMPRESS_TASK_DIR:-../shared/data/tasks}" ] && TASKS="--tasks arc_easy,piqa --limit ${LMPRESS_TASK_LIMIT:-200}"
$LMP compare $FILES --labels "$LABELS" -f "$TEXT" --ctx "$CTX" --chunks "$CHUNKS" $TASKS --out "$OUT/report" \
  --title "$(basename "$MODEL"): perplexity against size"
echo "(perplexity and KLD: $TEXT, llama.cpp protocol, ctx $CTX, first $CHUNKS windows; tasks: first ${LMPRESS_TASK_LIMIT:-200} items)"
echo "report: $OUT/report.md, $OUT/report.json, $OUT/report.svg"
