#!/usr/bin/env bash
# QuaRot's residual rotation before quantizing (`lmpress quantize --rotate
# hadamard:SEED`) against the same quantization without it, on lmp-8m-w256
# (widths 256/768: k-quants apply to every linear) at Q2_K, Q3_K_S and
# int3-g128, and on lmp-8m (width 288 = 36·8, a Paley Hadamard factor) at
# int3-g32; RTN and GPTQ. The protocol of bench/lmp8m-setup.sh: calibration on
# the first three quarters of docs-calib.txt, KL divergence from the dense F32
# model and PPL on wiki.test.raw (ctx 256), PPL on the held-out last quarter of
# docs-calib.txt. Rotated rows are given for two seeds (the random signs):
# their spread is the noise a difference must exceed; ",r4" rows add QuaRot's
# online rotation before ffn_down (GGUF types only: the int-N checkpoints are
# for engines that do not apply it).
# Usage: bench/rotate-table.sh [CHUNKS] [HELDOUT_CHUNKS]   (writes bench/results/rotate-lmp-8m.md)
# TYPES_W256 / TYPES_8M choose the types (e.g. TYPES_W256=int2-g128 TYPES_8M=int2-g32 OUT=...).
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-150}
HELD_CHUNKS=${2:-100}
OUT=${OUT:-$PWD/bench/results/rotate-lmp-8m.md}
SEEDS=${SEEDS:-"0 1 0,r4 1,r4"}
source bench/lmp8m-setup.sh

row() {  # model dense file label type method rotation seconds
  local dense=$2 f=$3 k held size
  k=$("$LMP" kld "$dense" "$f" -f "$WIKI" -c 256 --chunks "$CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f | %.5f ± %.5f" % (j["ppl"]["value"], j["ppl"]["unc"], j["kld"]["value"], j["kld"]["unc"]))')
  held=$("$LMP" perplexity "$f" -f "$W/heldout.txt" -c 256 --chunks "$HELD_CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f" % (j["ppl"], j["ppl_stderr"]))')
  size=$(du -sb "$f" | cut -f1)
  echo "| $1 | $5 | $6 | $7 | $size | $k | $held | $8 |" >> "$OUT.tmp"
}
{
  echo "| model | type | method | rotation | size (bytes) | PPL wiki.test.raw | KLD vs dense f32 (wiki) | PPL held-out docs | quantize time (s) |"
  echo "|---|---|---|---|--:|--:|--:|--:|--:|"
} > "$OUT.tmp"
for model in lmp-8m-w256 lmp-8m; do
  dense=$W/$model.gguf
  "$LMP" convert "$SHARED/models/$model" "$dense" --dtype f32 > /dev/null
  read -r -a types <<< "$([ $model = lmp-8m ] && echo "${TYPES_8M:-int3-g32}" || echo "${TYPES_W256:-q2_k q3_k_s int3-g128}")"
  for type in "${types[@]}"; do
    case $type in int*) out=$W/q ;; *) out=$W/q.gguf ;; esac
    for method in rtn gptq; do
      extra=""; [ $method = gptq ] && extra="$CAL"
      for rot in none $SEEDS; do
        case $type,$rot in int*,*r4) continue ;; esac
        flag=""; label=-; [ "$rot" != none ] && { flag="--rotate hadamard:$rot"; label="hadamard:$rot"; }
        rm -rf "$out"
        t0=$(date +%s.%N)
        "$LMP" quantize "$dense" "$out" --type $type --method $method $extra $flag > /dev/null
        secs=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))")
        row $model "$dense" "$out" "" $type $method "$label" "$secs"
      done
    done
  done
done
{
  echo "# QuaRot rotation before quantizing: lmp-8m-w256 and lmp-8m"
  echo
  echo "\`${TYPES_W256:+TYPES_W256=\"$TYPES_W256\" }${TYPES_8M:+TYPES_8M=\"$TYPES_8M\" }bench/rotate-table.sh $CHUNKS $HELD_CHUNKS\`, $(date -u +%Y-%m-%d). CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
  echo "$(nproc) threads; flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx_vnni|fma|f16c)$' | tr '\n' ' ')."
  echo
  cat "$OUT.tmp"
} > "$OUT"
rm -f "$OUT.tmp"
cat "$OUT"
