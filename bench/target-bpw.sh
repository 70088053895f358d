#!/usr/bin/env bash
# --target-bpw against llama.cpp's fixed mixes at the same size: for each
# preset, the preset's file and a --target-bpw file of the preset's bits per
# weight (both RTN, and both AWQ), and the int-N group formats. Perplexity by
# llama.cpp's llama-perplexity for GGUF files (ctx 256 on wiki.test.raw), by
# lmpress for the GPTQ-layout directories (llama.cpp does not read them).
# Calibration uses other text (docs-calib.txt).
# Usage: bench/target-bpw.sh [MODEL_DIR] [CHUNKS]   (CHUNKS: -1 = whole text)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-../shared/models/lmp-8m}
CHUNKS=${2:-300}
TYPES=${TYPES:-"q4_0 q3_k_m q2_k"}
SHARED=$(cd ../shared && pwd)
CALIB=$SHARED/data/calib/docs-calib.txt
EVAL=$SHARED/data/wikitext-2/wiki.test.raw
LMP=$PWD/build/lmpress
BIN=$(bash "$SHARED/tools/build-llama-cpp.sh" | tail -1)
OUT=${OUT:-$PWD/bench/results/target-bpw-$(basename "$MODEL").md}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
CAL="--calib $CALIB --calib-samples 128 --calib-ctx 256"

ppl() {
  if [ -d "$1" ]; then
    "$LMP" perplexity "$1" -f "$EVAL" --ctx 256 --chunks "$CHUNKS" --json |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print(round(j["ppl"],4), round(j["ppl_stderr"],4))'
  else
    "$BIN/llama-perplexity" -m "$1" -f "$EVAL" -c 256 -t 2 --chunks "$CHUNKS" 2>&1 |
      sed -n 's/.*Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 \2/p'
  fi
}
"$LMP" convert "$MODEL" "$W/f32.gguf" --dtype f32 > /dev/null
read -r base base_err < <(ppl "$W/f32.gguf")
{
  echo "| file | method | bpw | PPL | ΔPPL vs f32 | quantize time (s) |"
  echo "|---|---|---:|---:|---:|---:|"
  echo "| f32 | - | 32.000 | $base ± $base_err | 0 | - |"
} > "$OUT"
row() {  # label method out json
  read -r p e < <(ppl "$3")
  python3 - "$1" "$2" "$4" "$p" "$e" "$base" >> "$OUT" <<'PY'
import json, sys
label, method, js, p, e, base = sys.argv[1:]
r = json.load(open(js))
print(f"| {label} | {method} | {r['bpw']:.3f} | {p} ± {e} | {float(p)-float(base):+.4f} | {r['seconds']:.1f} |")
PY
}
for t in $TYPES; do
  for m in rtn awq; do
    extra=""; [ "$m" = awq ] && extra="$CAL"
    "$LMP" quantize "$W/f32.gguf" "$W/$t-$m.gguf" --type "$t" --method $m $extra --json > "$W/$t-$m.json"
    row "$t (llama.cpp mix)" $m "$W/$t-$m.gguf" "$W/$t-$m.json"
    bpw=$(python3 -c "import json; print(json.load(open('$W/$t-$m.json'))['bpw'])")
    "$LMP" quantize "$W/f32.gguf" "$W/$t-$m-target.gguf" --target-bpw "$bpw" --method $m $CAL --json > "$W/$t-$m-target.json"
    row "--target-bpw $(printf %.3f "$bpw")" $m "$W/$t-$m-target.gguf" "$W/$t-$m-target.json"
  done
done
for t in ${INT_TYPES:-int4-g32 int3-g32 int3-ch int2-g32-asym}; do
  for m in rtn gptq awq; do
    extra=""; [ "$m" != rtn ] && extra="$CAL"
    "$LMP" quantize "$MODEL" "$W/$t-$m" --type "$t" --method $m $extra --json > "$W/$t-$m.json"
    row "$t (GPTQ layout)" $m "$W/$t-$m" "$W/$t-$m.json"
  done
  "$LMP" quantize "$MODEL" "$W/$t-clip" --type "$t" --clip-search --json > "$W/$t-clip.json"
  row "$t (GPTQ layout)" "rtn --clip-search" "$W/$t-clip" "$W/$t-clip.json"
done
cat "$OUT"
