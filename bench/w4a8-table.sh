#!/usr/bin/env bash
# W4A8 against W8A8 and weight-only int4 on lmp-8m (the protocol of
# bench/lmp8m-setup.sh: GPTQ calibrated on the first three quarters of
# docs-calib.txt, KL divergence from the dense F32 model and PPL on
# wiki.test.raw (ctx 256), PPL on the held-out last quarter of docs-calib.txt).
# Every file is a compressed-tensors checkpoint directory; sizes are its
# safetensors bytes (the F16 embeddings and head included).
# Usage: bench/w4a8-table.sh [CHUNKS] [HELDOUT_CHUNKS]   (writes bench/results/w4a8-lmp-8m.md)
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-150}
HELD_CHUNKS=${2:-100}
OUT=${OUT:-$PWD/bench/results/w4a8-lmp-8m.md}
source bench/lmp8m-setup.sh
dense=$W/dense.gguf
{
  echo "| file | weights | activations | safetensors bytes | PPL wiki.test.raw | KLD vs dense f32 (wiki) | PPL held-out docs |"
  echo "|---|---|---|--:|--:|--:|--:|"
} > "$OUT.tmp"
row() {  # label weights activations flags...
  local label=$1 wts=$2 act=$3 k held size
  shift 3
  rm -rf "$W/q"
  "$LMP" quantize "$dense" "$W/q" --method gptq $CAL "$@" > /dev/null
  k=$("$LMP" kld "$dense" "$W/q" -f "$WIKI" -c 256 --chunks "$CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f | %.5f ± %.5f" % (j["ppl"]["value"], j["ppl"]["unc"], j["kld"]["value"], j["kld"]["unc"]))')
  held=$("$LMP" perplexity "$W/q" -f "$W/heldout.txt" -c 256 --chunks "$HELD_CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f" % (j["ppl"], j["ppl_stderr"]))')
  size=$(cat "$W"/q/*.safetensors | wc -c)
  echo "| $label | $wts | $act | $size | $k | $held |" >> "$OUT.tmp"
}
row "int8-ch" "int8 per channel" "f32" --type int8-ch --format compressed-tensors
row "w8a8" "int8 per channel" "int8 per token" --scheme w8a8
row "int4-ch" "int4 per channel" "f32" --type int4-ch --format compressed-tensors
row "w4a8" "int4 per channel" "int8 per token" --scheme w4a8
row "w4a8 --smooth 0.5" "int4 per channel" "int8 per token" --scheme w4a8 --smooth 0.5
row "int4-g32" "int4, groups of 32" "f32" --type int4-g32 --format compressed-tensors
row "w4a8 --type int4-g32" "int4, groups of 32" "int8 per token" --scheme w4a8 --type int4-g32
{
  echo "# W4A8 against W8A8 and weight-only int4: lmp-8m, GPTQ"
  echo
  echo "\`bench/w4a8-table.sh $CHUNKS $HELD_CHUNKS\`, $(date -u +%Y-%m-%d). CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
  echo "$(nproc) threads. Calibration: 128 windows of 256 tokens of docs-calib.txt's first three quarters."
  echo
  cat "$OUT.tmp"
} > "$OUT"
rm -f "$OUT.tmp"
cat "$OUT"
