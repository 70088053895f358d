#!/usr/bin/env bash
# The KV cache's cost in quality, side by side with llama.cpp: `lmpress kld MODEL MODEL --base-cache-type f32
# --cache-type T` (the same file, f32 cache as the base) next to `llama-perplexity --kl-divergence -fa on -ctk T -ctv T`
# against a base saved with -ctk f32 -ctv f32, on the same GGUF and the same windows of wikitext-2's test text.
# Both rotate quantized caches by default (llama.cpp: attn_rot_k/attn_rot_v for head sizes that are multiples of 64;
# lmpress --kv-rotate auto, the same rule); rows "(no rotation)" turn it off in both (LLAMA_ATTN_ROT_DISABLE=1,
# --kv-rotate off). KIVI has no llama.cpp counterpart. Models: lmp-8m-w256 (head size 64) for every type; lmp-8m
# (head size 48) for the types whose blocks fit it (llama.cpp's quantized types need 32 | 48: they do not).
# Usage: bench/kv-quality.sh     Env: CHUNKS (80 windows of 256 tokens), THREADS (2), OUT, WORK, LMP (build/lmpress)
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${CHUNKS:-80}; THREADS=${THREADS:-2}; CTX=256
LMP=${LMP:-$PWD/build/lmpress}
BIN=$(bash ../shared/tools/build-llama-cpp.sh | tail -1)
OUT=${OUT:-$PWD/bench/results/kv-quality.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
TEXT=../shared/data/wikitext-2/wiki.test.raw

lmp_kld() {  # GGUF [options...] -> "kld unc bits"
  local g=$1; shift
  "$LMP" kld "$g" "$g" -f "$TEXT" --ctx $CTX --chunks "$CHUNKS" -t "$THREADS" --base-cache-type f32 --json "$@" |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["kld"]["value"], j["kld"]["unc"], j["kv_cache"]["bits_per_value"])'
}
llama_kld() {  # GGUF TYPE ROT_DISABLE -> "kld unc"
  LLAMA_ATTN_ROT_DISABLE=$3 "$BIN/llama-perplexity" -m "$1" -f "$TEXT" -c $CTX --chunks "$CHUNKS" -t "$THREADS" -fa on \
    -ctk "$2" -ctv "$2" --kl-divergence-base "$1.kld" --kl-divergence 2>&1 |
    awk '/Mean    KLD:/ { print $3, $5 }'
}

{
  echo "# KV-cache types: KL divergence from the f32 cache"
  echo
  echo "\`bench/kv-quality.sh\`, $(date -u +%Y-%m-%d), CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "(flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|f16c|fma)$' | tr '\n' ' ')), $THREADS threads."
  echo "Mean KLD (± its standard error) of each cache type's logits from the same model's with an f32 cache, over"
  echo "$CHUNKS windows of $CTX tokens of wikitext-2 test (llama.cpp's protocol: the second half of each window"
  echo "scored). Bits per value: K and V together (KIVI's f16 rows for the newest positions not counted)."
} > "$OUT.tmp"

for m in lmp-8m-w256 lmp-8m; do
  g="$W/$m-f32.gguf"
  [ -f "$g" ] || "$LMP" convert "../shared/models/$m" "$g" --dtype f32 > /dev/null
  "$BIN/llama-perplexity" -m "$g" -f "$TEXT" -c $CTX --chunks "$CHUNKS" -t "$THREADS" -fa on -ctk f32 -ctv f32 \
    --kl-divergence-base "$g.kld" > /dev/null 2>&1
  {
    echo
    echo "## $m (head size $(python3 -c "import json; c=json.load(open('../shared/models/$m/config.json')); print(c.get('head_dim', c['hidden_size'] // c['num_attention_heads']))"))"
    echo
    echo "| cache type | bits/value | lmpress KLD | llama.cpp KLD |"
    echo "|---|---:|---:|---:|"
  } >> "$OUT.tmp"
  if [ "$m" = lmp-8m-w256 ]; then
    rows="f16 bf16 q8_0 q5_1 q5_0 q4_1 iq4_nl q4_0 q8_0:off q4_0:off iq4_nl:off kivi4 kivi4:g32 kivi4:r64 kivi2 kivi2:g32 kivi2:r64"
  else
    rows="f16 bf16 kivi4:g48 kivi4:g16 kivi2:g48 kivi2:g16"
  fi
  for row in $rows; do
    t=${row%%:*}; opt=${row#$t}; opt=${opt#:}
    args=(--cache-type "$t"); label=$t; rot=0
    case "$opt" in
      off) args+=(--kv-rotate off); label="$t (no rotation)"; rot=1 ;;
      g*) args+=(--kv-group "${opt#g}"); label="$t, group ${opt#g}" ;;
      r*) args+=(--kv-residual "${opt#r}"); label="$t, residual ${opt#r}" ;;
    esac
    read -r k u bits < <(lmp_kld "$g" "${args[@]}")
    lc="—"
    case "$t" in kivi*) ;; *) read -r lk lu < <(llama_kld "$g" "$t" "$rot"); lc="$lk ± $lu" ;; esac
    printf '| %s | %.2f | %.6f ± %.6f | %s |\n' "$label" "$bits" "$k" "$u" "$lc" >> "$OUT.tmp"
    echo "$m $label: $k $lc" >&2
  done
done
mv "$OUT.tmp" "$OUT"
cat "$OUT"
