#!/usr/bin/env bash
# Pruning on lmp-8m: magnitude / Wanda / SparseGPT at 50% and 70% unstructured
# and 2:4, stored as F16 and with 4-bit (Q4_0) quantization, and at 2:4 with
# Q8_0. Calibration on the first three quarters of docs-calib.txt; measured on
# wiki.test.raw (ctx 256, the issue's protocol: out of domain for this model),
# as KL divergence from the dense F32 model on the same text, and as perplexity
# on the held-out last quarter of docs-calib.txt (in domain, never seen by
# calibration). "run as" is the layout `lmpress` repacks the weights into at
# load, "in memory" their bytes then.
#
# Decoding speed depends on the sparsity pattern and the weight type, not on
# which method chose the zeros, and lmp-8m fits in cache (its timings are
# noise). So the tokens/s column is measured first, once per pattern and type,
# on a tinyllama-1.1b-shaped model (make-model, random weights) pruned by
# magnitude the same way: `lmpress bench -p 0 -n 64 -r REPS -t 2`.
# Usage: bench/prune-table.sh [CHUNKS] [HELDOUT_CHUNKS] [REPS]   (writes bench/results/prune-lmp-8m.md)
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-150}
HELD_CHUNKS=${2:-100}
REPS=${3:-3}
OUT=${OUT:-$PWD/bench/results/prune-lmp-8m.md}
source bench/lmp8m-setup.sh
SHAPE=tinyllama-1.1b

# Speed first, while nothing else runs: key "pattern|quantize" -> "t/s ± sd".
declare -A SPEED
"$LMP" make-model --shape $SHAPE --type f16 "$W/big.gguf" > /dev/null
tg_big() {  # file -> "avg ± sd"
  "$LMP" bench "$1" -p 0 -n 64 -r "$REPS" -t 2 --json --no-bandwidth |
    python3 -c 'import json,sys; t=json.load(sys.stdin)[0]; print("%.2f ± %.2f" % (t["avg_ts"], t["stddev_ts"]))'
}
SPEED["-|"]=$(tg_big "$W/big.gguf")
for q in q4_0 q8_0; do
  "$LMP" quantize "$W/big.gguf" "$W/big-q.gguf" --type $q > /dev/null
  SPEED["-|--quantize $q"]=$(tg_big "$W/big-q.gguf")
done
for pat in "--sparsity 0.5" "--sparsity 0.7" "--nm 2:4"; do
  for q in "" "--quantize q4_0" "--quantize q8_0"; do
    [ "$q" = "--quantize q8_0" ] && [ "$pat" != "--nm 2:4" ] && continue
    "$LMP" prune "$W/big.gguf" "$W/big-p.gguf" $pat $q > /dev/null
    SPEED["$pat|$q"]=$(tg_big "$W/big-p.gguf")
  done
done
rm -f "$W"/big*.gguf
"$LMP" convert "$W/dense.gguf" "$W/dense-f16.gguf" --dtype f16 > /dev/null
"$LMP" quantize "$W/dense.gguf" "$W/dense-q4_0.gguf" --type q4_0 > /dev/null
"$LMP" quantize "$W/dense.gguf" "$W/dense-q8_0.gguf" --type q8_0 > /dev/null

row() {  # file label pattern seconds speed-key
  local f=$1 label=$2 pattern=$3 secs=$4 key=$5
  local k held size run
  k=$("$LMP" kld "$W/dense.gguf" "$f" -f "$WIKI" -c 256 --chunks "$CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f | %.5f ± %.5f" % (j["ppl"]["value"], j["ppl"]["unc"], j["kld"]["value"], j["kld"]["unc"]))')
  held=$("$LMP" perplexity "$f" -f "$W/heldout.txt" -c 256 --chunks "$HELD_CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f" % (j["ppl"], j["ppl_stderr"]))')
  size=$(stat -c %s "$f")
  # The layout the weights run in (after the repacking at load) and their bytes in memory.
  run=$("$LMP" bench "$f" -p 0 -n 1 -r 1 -t 2 --json --no-bandwidth |
    python3 -c 'import json,sys; t=json.load(sys.stdin)[0]; print("%s | %d" % (t["model_type"].split()[-1], t["model_size"]))')
  echo "| $label | $pattern | $size | $run | ${SPEED[$key]} | $k | $held | $secs |" >> "$OUT.tmp"
}

{
  echo "| method | pattern | file size (bytes) | run as | in memory (bytes) | tg64 t/s, same pattern and type at 1.1B | PPL wiki.test.raw | KLD vs dense f32 (wiki) | PPL held-out docs | prune time (s) |"
  echo "|---|---|--:|---|--:|--:|--:|--:|--:|--:|"
} > "$OUT.tmp"
row "$W/dense-f16.gguf" "dense" "-" "-" "-|"
row "$W/dense-q4_0.gguf" "dense + Q4_0 (RTN)" "-" "-" "-|--quantize q4_0"
row "$W/dense-q8_0.gguf" "dense + Q8_0 (RTN)" "-" "-" "-|--quantize q8_0"
for pat in "--sparsity 0.5" "--sparsity 0.7" "--nm 2:4"; do
  quants=("" "--quantize q4_0")
  [ "$pat" = "--nm 2:4" ] && quants+=("--quantize q8_0")
  for q in "${quants[@]}"; do
    for method in magnitude wanda sparsegpt; do
      t0=$(date +%s.%N)
      "$LMP" prune "$W/dense.gguf" "$W/p.gguf" --method "$method" $pat $q $CAL > /dev/null
      secs=$(python3 -c "import sys; print('%.1f' % ($(date +%s.%N) - $t0))")
      f="$W/p.gguf"
      if [ -z "$q" ]; then  # pruned in F32, run as F16 (the sparse F16 layouts)
        "$LMP" convert "$W/p.gguf" "$W/p16.gguf" --dtype f16 > /dev/null
        f="$W/p16.gguf"
      fi
      label=$method
      [ -n "$q" ] && label="$method + $(echo "${q#--quantize }" | tr a-z A-Z)"
      case "$pat" in
        --nm*) plabel="${pat#--nm }" ;;
        *) plabel="${pat#--sparsity } unstructured" ;;
      esac
      row "$f" "$label" "$plabel" "$secs" "$pat|$q"
    done
  done
done
mv "$OUT.tmp" "$OUT"
cat "$OUT"
