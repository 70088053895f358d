#!/usr/bin/env bash
# Low-rank compression (`lmpress lowrank`) on lmp-8m: plain SVD, ASVD and
# SVD-LLM at 20% and 40% fewer parameters in every block linear, and ASVD and
# SVD-LLM with --global (the linears lose that share together, ranks by their
# spectra) (F32 factors, so the table shows the factorization alone), against magnitude pruning of
# the same share of the linears' weights (the same parameter count; a pruned
# file stored dense keeps its bytes). The protocol of bench/lmp8m-setup.sh:
# calibration on the first three quarters of docs-calib.txt, KL divergence
# from the dense F32 model and PPL on wiki.test.raw (ctx 256), PPL on the
# held-out last quarter.
# Usage: bench/lowrank-table.sh [CHUNKS] [HELDOUT_CHUNKS]   (writes bench/results/lowrank-lmp-8m.md; MODEL= another)
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-80}
HELD_CHUNKS=${2:-60}
OUT=${OUT:-$PWD/bench/results/lowrank-$(basename "${MODEL:-lmp-8m}").md}
RATIOS=${RATIOS:-"0.2 0.4"}
source bench/lmp8m-setup.sh
CAL="--calib $W/calib.txt --calib-samples 64 --calib-ctx 256"
NPARAMS=$("$LMP" info "$W/dense.gguf" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_params"])')

row() {  # label file parameters
  local k held
  k=$("$LMP" kld "$W/dense.gguf" "$2" -f "$WIKI" -c 256 --chunks "$CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f | %.5f ± %.5f" % (j["ppl"]["value"], j["kld"]["value"], j["kld"]["unc"]))')
  held=$("$LMP" perplexity "$2" -f "$W/heldout.txt" -c 256 --chunks "$HELD_CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f" % (j["ppl"], j["ppl_stderr"]))')
  echo "| $1 | $3 | $(stat -c %s "$2") | $k | $held |" >> "$OUT.tmp"
}
{
  echo "| model | parameters | file bytes | PPL wiki | KLD vs dense f32 (wiki) | PPL held-out docs |"
  echo "|---|--:|--:|--:|--:|--:|"
} > "$OUT.tmp"
row "dense F32" "$W/dense.gguf" "$NPARAMS"
for R in $RATIOS; do
  for m in svd asvd svd-llm; do
    cal=""; [ $m != svd ] && cal=$CAL
    p=$("$LMP" lowrank "$W/dense.gguf" "$W/$m-$R.gguf" --method $m --ratio "$R" --factor-type f32 $cal --json |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["params_after"])')
    row "$m, linears −$R" "$W/$m-$R.gguf" "$p"
  done
  for m in asvd svd-llm; do  # one budget for all linears, ranks by their spectra
    p=$("$LMP" lowrank "$W/dense.gguf" "$W/$m-g$R.gguf" --method $m --ratio "$R" --global --factor-type f32 $CAL --json |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["params_after"])')
    row "$m --global, linears −$R together" "$W/$m-g$R.gguf" "$p"
  done
  p=$("$LMP" prune "$W/dense.gguf" "$W/mag-$R.gguf" --method magnitude --sparsity "$R" --json |
    python3 -c "import json,sys; j=json.load(sys.stdin); print(round($NPARAMS * (1 - j['sparsity_model'])))")
  row "magnitude pruning, linears −$R (zeros stored)" "$W/mag-$R.gguf" "$p"
done
{
  echo "# Low-rank compression on $(basename "$MODEL")"
  echo
  echo "\`bench/lowrank-table.sh $CHUNKS $HELD_CHUNKS\`, $(date -u +%Y-%m-%d). CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
  echo "$(nproc) threads; flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx_vnni|fma|f16c)$' | tr '\n' ' ')."
  echo "Calibration (asvd, svd-llm): 64 windows of 256 tokens of the first three quarters of docs-calib.txt."
  echo "Parameters: the whole model's (the pruned rows count the kept weights; its file holds the zeros)."
  echo
  cat "$OUT.tmp"
} > "$OUT"
rm -f "$OUT.tmp"
cat "$OUT"
