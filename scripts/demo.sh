#!/usr/bin/env bash
# The main job on the default model: inspect it, convert it to GGUF (f32 and
# f16), quantize it to Q4_K_M and Q3_K_M with RTN (llama-quantize's result),
# GPTQ and AWQ (calibrated on other text) and to a GPTQ int4-g32 checkpoint for
# GPU engines, measure perplexity of each with the
# llama.cpp protocol, generate a little text, and print the comparison.
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
ppl() { $LMP perplexity "$1" -f "$TEXT" --ctx "$CTX" --chunks "$CHUNKS" --json | sed -n 's/^  "ppl": \([0-9.]*\),/\1/p'; }
size() {
  if [ -d "$1" ]; then du -cb "$1"/*.safetensors | tail -1 | cut -f1
  else $LMP info "$1" --json --no-tensors | sed -n 's/^  "n_bytes": \([0-9]*\),/\1/p'; fi
}
echo
$LMP generate "$OUT/model-f16.gguf" -p "The kernel scheduler" -n 48
echo
printf '\n%-28s %12s %10s %10s\n' "model" "bytes" "PPL" "dPPL"
base=$(ppl "$MODEL")
printf '%-28s %12s %10.4f %10s\n' "original" "$(size "$MODEL")" "$base" "-"
for v in $VARIANTS; do
  p=$(ppl "$OUT/model-$v.gguf")
  awk -v n="model-$v.gguf" -v s="$(size "$OUT/model-$v.gguf")" -v p="$p" -v b="$base" \
    'BEGIN { printf "%-28s %12s %10.4f %+10.4f\n", n, s, p, p - b }'
done
v="$OUT/model-int4-g32-gptq"; p=$(ppl "$v")
awk -v n="model-int4-g32-gptq/" -v s="$(size "$v")" -v p="$p" -v b="$base" \
  'BEGIN { printf "%-28s %12s %10.4f %+10.4f\n", n, s, p, p - b }'
echo "(perplexity: $TEXT, llama.cpp protocol, ctx $CTX, first $CHUNKS windows)"
