#!/usr/bin/env bash
# Pruning on lmp-8m: magnitude / Wanda / SparseGPT at 50% and 70% unstructured
# and 2:4, alone and with 4-bit (Q4_0) quantization. Calibration on the first
# three quarters of docs-calib.txt; measured on wiki.test.raw (ctx 256, the
# issue's protocol: out of domain for this model), as KL divergence from the
# dense model on the same text, and as perplexity on the held-out last quarter
# of docs-calib.txt (in domain, never seen by calibration).
# Usage: bench/prune-table.sh [CHUNKS] [HELDOUT_CHUNKS]   (writes bench/results/prune-lmp-8m.md)
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-150}
HELD_CHUNKS=${2:-100}
OUT=${OUT:-$PWD/bench/results/prune-lmp-8m.md}
source bench/lmp8m-setup.sh
"$LMP" quantize "$W/dense.gguf" "$W/dense-q4_0.gguf" --type q4_0 > /dev/null

row() {  # file label pattern seconds
  local f=$1 label=$2 pattern=$3 secs=$4
  local k held size
  k=$("$LMP" kld "$W/dense.gguf" "$f" -f "$WIKI" -c 256 --chunks "$CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f | %.5f ± %.5f" % (j["ppl"]["value"], j["ppl"]["unc"], j["kld"]["value"], j["kld"]["unc"]))')
  held=$("$LMP" perplexity "$f" -f "$W/heldout.txt" -c 256 --chunks "$HELD_CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f" % (j["ppl"], j["ppl_stderr"]))')
  size=$(stat -c %s "$f")
  echo "| $label | $pattern | $size | $k | $held | $secs |" >> "$OUT.tmp"
}

{
  echo "| method | pattern | size (bytes) | PPL wiki.test.raw | KLD vs dense (wiki) | PPL held-out docs | prune time (s) |"
  echo "|---|---|--:|--:|--:|--:|--:|"
} > "$OUT.tmp"
row "$W/dense.gguf" "dense f32" "-" "-"
row "$W/dense-q4_0.gguf" "dense + Q4_0 (RTN)" "-" "-"
for pat in "--sparsity 0.5" "--sparsity 0.7" "--nm 2:4"; do
  for q in "" "--quantize q4_0"; do
    for method in magnitude wanda sparsegpt; do
      f="$W/p.gguf"
      t0=$(date +%s.%N)
      "$LMP" prune "$W/dense.gguf" "$f" --method "$method" $pat $q $CAL > /dev/null
      secs=$(python3 -c "import sys; print('%.1f' % ($(date +%s.%N) - $t0))")
      label=$method
      [ -n "$q" ] && label="$method + Q4_0"
      case "$pat" in
        --nm*) plabel="${pat#--nm }" ;;
        *) plabel="${pat#--sparsity } unstructured" ;;
      esac
      row "$f" "$label" "$plabel" "$secs"
    done
  done
done
mv "$OUT.tmp" "$OUT"
cat "$OUT"
