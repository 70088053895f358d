#!/usr/bin/env bash
# Structured pruning and OWL on lmp-8m: uniform vs global (per-layer sizes)
# allocation of removed heads/channels, with and without FLAP bias
# compensation; and unstructured 70% with and without OWL block sparsities.
# Calibration and held-out text as in prune-table.sh. With LLAMA_BIN (a
# llama.cpp bin directory) the global files are also measured by
# llama-perplexity, to show that llama.cpp loads them ("deci" arrays) and agrees.
# Usage: bench/structured-table.sh [CHUNKS] [HELDOUT_CHUNKS]   (writes bench/results/structured-lmp-8m.md)
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-150}
HELD_CHUNKS=${2:-100}
OUT=${OUT:-$PWD/bench/results/structured-lmp-8m.md}
source bench/lmp8m-setup.sh
PARAMS=$("$LMP" info "$W/dense.gguf" --json --no-tensors | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_params"])')

removed() {  # file -> share of the dense model's parameters it lacks
  local n
  n=$("$LMP" info "$1" --json --no-tensors | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_params"])')
  python3 -c "print('%.1f%%' % (100 * (1 - $n / $PARAMS)))"
}

measure() {  # file -> "size | wiki PPL | KLD | held-out PPL"
  local f=$1 k held
  k=$("$LMP" kld "$W/dense.gguf" "$f" -f "$WIKI" -c 256 --chunks "$CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f | %.4f" % (j["ppl"]["value"], j["ppl"]["unc"], j["kld"]["value"]))')
  held=$("$LMP" perplexity "$f" -f "$W/heldout.txt" -c 256 --chunks "$HELD_CHUNKS" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f" % (j["ppl"], j["ppl_stderr"]))')
  echo "$(stat -c %s "$f") | $k | $held"
}

{
  echo "### Structured: uniform vs global allocation, bias compensation"
  echo
  echo "| spec | parameters removed | file (bytes) | PPL wiki.test.raw | KLD vs dense | PPL held-out docs | per-layer feed-forward (KV heads) |"
  echo "|---|--:|--:|--:|--:|--:|---|"
} > "$OUT.tmp"
for base in "ffn=0.3" "ffn=0.45" "layers=1,ffn=0.2" "heads=0.5,ffn=0.2"; do
  for mode in "" ",bias" ",global" ",global,bias"; do
    spec=$base$mode
    "$LMP" prune "$W/dense.gguf" "$W/s.gguf" --structured "$spec" $CAL --json > "$W/s.json"
    shape=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(" ".join("%d(%d)" % x for x in zip(j["layer_ffn"], j["layer_kv_heads"])))' "$W/s.json")
    echo "| \`$spec\` | $(removed "$W/s.gguf") | $(measure "$W/s.gguf") | $shape |" >> "$OUT.tmp"
    if [ -n "${LLAMA_BIN:-}" ] && [[ $spec == *global* ]]; then
      ours=$("$LMP" perplexity "$W/s.gguf" -f "$WIKI" -c 256 --chunks 40 --json | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])')
      theirs=$("$LLAMA_BIN/llama-perplexity" -m "$W/s.gguf" -f "$WIKI" -c 256 --chunks 40 -t 2 2>&1 | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
      echo "$spec: lmpress $ours, llama.cpp $theirs (40 windows)" >> "$W/llama.txt"
    fi
  done
done
{
  echo
  echo "### Unstructured 70%: uniform vs OWL block sparsities (λ = 0.08, M = 5)"
  echo
  echo "| method | sparsities | file (bytes) | PPL wiki.test.raw | KLD vs dense | PPL held-out docs | block sparsities |"
  echo "|---|---|--:|--:|--:|--:|---|"
} >> "$OUT.tmp"
for method in magnitude wanda sparsegpt; do
  for owl in "" "--owl"; do
    "$LMP" prune "$W/dense.gguf" "$W/p.gguf" --method "$method" --sparsity 0.7 $owl $CAL --json > "$W/p.json"
    blocks=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(" ".join("%.3f" % s for s in j.get("layer_sparsity", [])) or "-")' "$W/p.json")
    echo "| $method | ${owl:-uniform} | $(measure "$W/p.gguf") | $blocks |" >> "$OUT.tmp"
  done
done
[ -f "$W/llama.txt" ] && { echo; echo "llama.cpp on the global files:"; echo; sed 's/^/- /' "$W/llama.txt"; } >> "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
