#!/usr/bin/env bash
# The quantization table of the README: for each file type, llama-quantize's
# file (with and without an importance matrix) against lmpress's RTN, GPTQ and
# AWQ files of the same type, all evaluated by llama.cpp's own llama-perplexity
# (ctx 256 on wiki.test.raw). Calibration uses other text (docs-calib.txt).
# Usage: bench/quant-table.sh [MODEL_DIR] [CHUNKS]   (CHUNKS: -1 = whole text)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-../shared/models/lmp-8m}
CHUNKS=${2:--1}
TYPES=${TYPES:-"q4_0 q4_k_m q3_k_m q2_k"}
SHARED=$(cd ../shared && pwd)
CALIB=$SHARED/data/calib/docs-calib.txt
EVAL=$SHARED/data/wikitext-2/wiki.test.raw
LMP=$PWD/build/lmpress
BIN=$(bash "$SHARED/tools/build-llama-cpp.sh" | tail -1)
OUT=${OUT:-$PWD/bench/results/quant-$(basename "$MODEL").md}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
CAL="--calib $CALIB --calib-samples 128 --calib-ctx 256"

"$LMP" convert "$MODEL" "$W/f32.gguf" --dtype f32 > /dev/null
"$LMP" imatrix "$W/f32.gguf" -f "$CALIB" -c 256 --chunks 128 -o "$W/imatrix.gguf" > /dev/null

ppl() { "$BIN/llama-perplexity" -m "$1" -f "$EVAL" -c 256 -t 2 --chunks "$CHUNKS" 2>&1 |
          sed -n 's/.*Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 \2/p'; }
params=$("$LMP" info "$W/f32.gguf" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_params"])')
read -r base base_err < <(ppl "$W/f32.gguf")
{
  echo "| type | method | imatrix | size (bytes) | bpw | PPL (llama-perplexity) | ΔPPL vs f32 | quantize time (s) |"
  echo "|---|---|---|---:|---:|---:|---:|---:|"
  echo "| f32 | - | - | $(stat -c %s "$W/f32.gguf") | 32.00 | $base ± $base_err | 0 | - |"
} > "$OUT"
row() {  # type method imatrix file seconds
  local size; size=$(stat -c %s "$4")
  read -r p e < <(ppl "$4")
  python3 - "$@" "$size" "$p" "$e" "$base" "$params" >> "$OUT" <<'PY'
import sys
t, method, im, f, secs, size, p, e, base, params = sys.argv[1:]
print(f"| {t} | {method} | {im} | {size} | {int(size)*8/int(params):.3f} | {p} ± {e} | {float(p)-float(base):+.4f} | {secs} |")
PY
}
timed() { local s; s=$(date +%s.%N); "$@" > /dev/null 2>&1; python3 -c "print(f'{$(date +%s.%N)-$s:.1f}')"; }
for t in $TYPES; do
  s=$(timed "$BIN/llama-quantize" "$W/f32.gguf" "$W/$t-lq.gguf" "$t"); row "$t" llama-quantize no "$W/$t-lq.gguf" "$s"
  s=$(timed "$BIN/llama-quantize" --imatrix "$W/imatrix.gguf" "$W/f32.gguf" "$W/$t-lqi.gguf" "$t")
  row "$t" llama-quantize yes "$W/$t-lqi.gguf" "$s"
  for m in rtn gptq awq; do
    extra=""; [ "$m" != rtn ] && extra="$CAL"
    s=$(timed "$LMP" quantize "$W/f32.gguf" "$W/$t-$m.gguf" --type "$t" --method "$m" $extra)
    row "$t" "lmpress $m" no "$W/$t-$m.gguf" "$s"
    s=$(timed "$LMP" quantize "$W/f32.gguf" "$W/$t-$m-i.gguf" --type "$t" --method "$m" $extra --imatrix "$W/imatrix.gguf")
    row "$t" "lmpress $m" yes "$W/$t-$m-i.gguf" "$s"
  done
done
cat "$OUT"
