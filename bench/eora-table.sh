#!/usr/bin/env bash
# Low-rank error compensation (`lmpress quantize --compensate rank=R`): Q2_K
# (RTN and GPTQ) with an EoRA adapter of rank 8..64 and with a plain-SVD
# adapter (LoRC) against the plain Q2_K file and the next larger plain file
# types, bytes of model + adapter included, on lmp-8m-w256 (widths 256/768:
# k-quants fit every linear). The protocol of bench/lmp8m-setup.sh: calibration
# on the first three quarters of docs-calib.txt, KL divergence from the dense
# F32 model and PPL on wiki.test.raw (ctx 256), PPL on the held-out last
# quarter; llama-perplexity -m Q --lora ADAPTER on the same windows beside
# lmpress's PPL (LLAMA_BIN: the llama.cpp peer's bin directory).
# Usage: bench/eora-table.sh [CHUNKS] [HELDOUT_CHUNKS]   (writes bench/results/eora-lmp-8m-w256.md)
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-80}
HELD_CHUNKS=${2:-60}
OUT=${OUT:-$PWD/bench/results/eora-lmp-8m-w256.md}
RANKS=${RANKS:-"8 16 32 64"}
LLAMA_BIN=${LLAMA_BIN:-$(bash ../shared/tools/build-llama-cpp.sh | tail -1)}
MODEL=${MODEL:-$(cd ../shared && pwd)/models/lmp-8m-w256}
source bench/lmp8m-setup.sh
CAL="--calib $W/calib.txt --calib-samples 64 --calib-ctx 256"

row() {  # label model-file adapter-file-or-empty
  local f=$2 a=$3 lora="" k held llama mbytes abytes bpw
  [ -n "$a" ] && lora="--lora $a"
  k=$("$LMP" kld "$W/dense.gguf" "$f" $lora -f "$WIKI" -c 256 --chunks "$CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f | %.5f ± %.5f" % (j["ppl"]["value"], j["kld"]["value"], j["kld"]["unc"]))')
  held=$("$LMP" perplexity "$f" $lora -f "$W/heldout.txt" -c 256 --chunks "$HELD_CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f" % (j["ppl"], j["ppl_stderr"]))')
  for try in 1 2 3; do  # a run on this shared VM now and then ends without its last line: tried again
    "$LLAMA_BIN/llama-perplexity" -m "$f" $lora -f "$WIKI" -c 256 --chunks "$CHUNKS" -t "$(nproc)" > "$W/llama.log" 2>&1 || true
    llama=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$W/llama.log")
    [ -n "$llama" ] && break
    tail -3 "$W/llama.log" >&2
  done
  mbytes=$(stat -c %s "$f")
  abytes=0; [ -n "$a" ] && abytes=$(stat -c %s "$a")
  bpw=$(python3 -c "print('%.3f' % (($mbytes + $abytes) * 8 / $NPARAMS))")
  echo "| $1 | $mbytes | $abytes | $bpw | $k | $llama | $held |" >> "$OUT.tmp"
}

NPARAMS=$("$LMP" info "$W/dense.gguf" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_params"])')
{
  echo "| file | model bytes | adapter bytes | bits/weight (both) | PPL wiki (lmpress) | KLD vs dense f32 (wiki) | PPL wiki (llama-perplexity) | PPL held-out docs |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|"
} > "$OUT.tmp"
row "dense F32" "$W/dense.gguf" ""
for type in q2_k q3_k_s q3_k_m q4_k_m; do
  "$LMP" quantize "$W/dense.gguf" "$W/$type.gguf" --type $type > /dev/null
  row "$type (RTN)" "$W/$type.gguf" ""
done
for r in $RANKS; do
  "$LMP" quantize "$W/dense.gguf" "$W/e$r.gguf" --type q2_k --compensate rank=$r $CAL > /dev/null
  row "q2_k (RTN) + EoRA rank $r" "$W/e$r.gguf" "$W/e$r.eora.gguf"
done
"$LMP" quantize "$W/dense.gguf" "$W/s16.gguf" --type q2_k --compensate rank=16,method=svd $CAL > /dev/null
row "q2_k (RTN) + plain SVD (LoRC) rank 16" "$W/s16.gguf" "$W/s16.eora.gguf"
"$LMP" quantize "$W/dense.gguf" "$W/g.gguf" --type q2_k --method gptq $CAL > /dev/null
row "q2_k (GPTQ)" "$W/g.gguf" ""
"$LMP" quantize "$W/dense.gguf" "$W/g16.gguf" --type q2_k --method gptq --compensate rank=16 $CAL > /dev/null
row "q2_k (GPTQ) + EoRA rank 16" "$W/g16.gguf" "$W/g16.eora.gguf"
{
  echo "# Low-rank error compensation (EoRA) on $(basename "$MODEL")"
  echo
  echo "\`bench/eora-table.sh $CHUNKS $HELD_CHUNKS\`, $(date -u +%Y-%m-%d). CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
  echo "$(nproc) threads; flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx_vnni|fma|f16c)$' | tr '\n' ' ')."
  echo "Calibration: 64 windows of 256 tokens of the first three quarters of docs-calib.txt; $NPARAMS parameters."
  echo "Adapters are F16 GGUF LoRA files (alpha = rank); both programs run them with \`--lora\`."
  echo
  cat "$OUT.tmp"
} > "$OUT"
rm -f "$OUT.tmp"
cat "$OUT"
