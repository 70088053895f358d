#!/usr/bin/env bash
# Holds lmpress beside llama.cpp on the same files: tokenization of
# wiki.test.raw (must be byte-identical) and perplexity (llama.cpp protocol),
# including GGUF files written by `lmpress convert` and read by llama.cpp.
# Builds the llama.cpp peer with ../shared/tools/build-llama-cpp.sh (about 8 minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
LMP=build/lmpress
BIN=$(bash ../shared/tools/build-llama-cpp.sh)
W=../shared/data/wikitext-2/wiki.test.raw
OUT=out/compare; mkdir -p "$OUT"
$LMP convert ../shared/models/lmp-8m "$OUT/lmp-8m-f32.gguf" >/dev/null
$LMP convert ../shared/models/lmp-8m "$OUT/lmp-8m-f16.gguf" --dtype f16 >/dev/null
$LMP convert ../shared/models/stories260K/stories260K.bin "$OUT/stories260K-from-llama2c.gguf" >/dev/null

echo "== tokenization of $W (llama-tokenize --ids vs lmpress tokenize)"
for m in ../shared/models/stories260K/stories260K.gguf ../shared/models/lmp-8m/lmp-8m-f32.gguf; do
  "$BIN/llama-tokenize" -m "$m" -f "$W" --ids --log-disable 2>/dev/null > "$OUT/llama.ids"
  $LMP tokenize "$m" -f "$W" > "$OUT/lmpress.ids"
  if cmp -s "$OUT/llama.ids" "$OUT/lmpress.ids"; then echo "identical  $m"; else echo "DIFFERENT  $m"; exit 1; fi
done

echo "== perplexity (llama.cpp protocol)"
printf '%-58s %6s %12s %12s\n' file ctx lmpress llama.cpp
ppl_l() { "$BIN/llama-perplexity" -m "$1" -f "$W" -c "$2" --chunks "$3" -t 2 2>&1 | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'; }
ppl_m() { $LMP perplexity "$1" -f "$W" --ctx "$2" --chunks "$3" | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'; }
row() { printf '%-58s %6s %12s %12s\n' "$1" "$2" "$(ppl_m "$1" "$2" "$3")" "$4"; }
row ../shared/models/stories260K/stories260K.gguf 128 100 "$(ppl_l ../shared/models/stories260K/stories260K.gguf 128 100)"
row ../shared/models/stories260K/stories260K.bin 128 100 "-"
row "$OUT/stories260K-from-llama2c.gguf" 128 100 "$(ppl_l "$OUT/stories260K-from-llama2c.gguf" 128 100)"
row ../shared/models/lmp-8m 256 40 "-"
for f in ../shared/models/lmp-8m/lmp-8m-f32.gguf "$OUT/lmp-8m-f32.gguf" "$OUT/lmp-8m-f16.gguf"; do
  row "$f" 256 40 "$(ppl_l "$f" 256 40)"
done

echo "== perplexity of llama-quantize files of lmp-8m (lmpress reads ggml's block formats)"
for t in q8_0 q6_k q5_k_m q5_1 q5_0 q4_k_m q4_1 q4_0 iq4_nl q3_k_m q2_k; do
  f="$OUT/lmp-8m-llama-$t.gguf"
  "$BIN/llama-quantize" ../shared/models/lmp-8m/lmp-8m-f32.gguf "$f" "$t" >/dev/null 2>&1
  row "$f" 256 40 "$(ppl_l "$f" 256 40)"
done

echo "== perplexity of llama-quantize files of lmp-8m-w256 in the codebook, ternary and MXFP4 types (256-wide rows)"
$LMP convert ../shared/models/lmp-8m-w256 "$OUT/w256-f32.gguf" --dtype f32 >/dev/null
"$BIN/llama-imatrix" -m "$OUT/w256-f32.gguf" -f ../shared/data/calib/docs-calib.txt -c 256 --chunks 40 -t 2 \
  -o "$OUT/w256.imatrix.gguf" >/dev/null 2>&1
row "$OUT/w256-f32.gguf" 256 40 "$(ppl_l "$OUT/w256-f32.gguf" 256 40)"
for t in IQ4_XS IQ3_S IQ3_M IQ3_XXS IQ2_M IQ2_S IQ2_XS IQ2_XXS IQ1_M IQ1_S TQ2_0 TQ1_0; do
  f="$OUT/w256-llama-$t.gguf"
  "$BIN/llama-quantize" --imatrix "$OUT/w256.imatrix.gguf" "$OUT/w256-f32.gguf" "$f" "$t" >/dev/null 2>&1
  row "$f" 256 40 "$(ppl_l "$f" 256 40)"
done
f="$OUT/w256-llama-MXFP4.gguf"  # no llama.cpp file type is MXFP4 outside MoE experts: by tensor pattern
"$BIN/llama-quantize" --tensor-type attn=mxfp4 --tensor-type ffn=mxfp4 "$OUT/w256-f32.gguf" "$f" Q8_0 >/dev/null 2>&1
row "$f" 256 40 "$(ppl_l "$f" 256 40)"

echo "== lmpress quantize vs llama-quantize on lmp-8m-w256 with the same imatrix (byte-identical files)"
for t in iq4_xs iq3_s iq3_m iq3_xs iq3_xxs iq2_m iq2_s iq2_xs iq2_xxs iq1_m iq1_s tq1_0 tq2_0; do
  "$BIN/llama-quantize" --imatrix "$OUT/w256.imatrix.gguf" "$OUT/w256-f32.gguf" "$OUT/w256-ll-$t.gguf" "$t" >/dev/null 2>&1
  $LMP quantize "$OUT/w256-f32.gguf" "$OUT/w256-lm-$t.gguf" --type "$t" --imatrix "$OUT/w256.imatrix.gguf" >/dev/null
  printf '%-8s %s\n' "$t" "$(python3 scripts/gguf-diff.py "$OUT/w256-ll-$t.gguf" "$OUT/w256-lm-$t.gguf" | tail -1)"
done
