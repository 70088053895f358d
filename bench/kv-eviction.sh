#!/usr/bin/env bash
# Eviction policies (--kv-policy), measured two ways on wikitext-2's test text:
#  1. Past the context: perplexity of lmp-8m and lmp-8m-w256 (trained on 256 positions) over windows of CTX_LONG
#     tokens (default 2048: the second half, scored, lies 4x to 8x past the trained context) with the cache bounded
#     by sink-window:4,192, next to the whole window in the cache (positions the model never saw), the same window
#     without the sinks (sink-window:0,196) and the sliding window with re-computation (--recompute-window 196: every
#     token scored from scratch after the 195 before it, no cache kept).
#  2. Within the context: KL divergence of each policy's logits from the full cache's (same model, f16 both), over
#     windows of 256 tokens whose second half is decoded one token at a time through the bounded cache, at 50% and
#     25% budgets (sink-window and h2o: the cache never holds more than half (a quarter) of the 256 positions;
#     snapkv: the 128-token prompt is compressed to half (a quarter), later positions all kept).
# Usage: bench/kv-eviction.sh     Env: LONG_CHUNKS (4), CTX_LONG (2048), CHUNKS (40), THREADS (2), OUT, LMP
set -euo pipefail
cd "$(dirname "$0")/.."
LONG_CHUNKS=${LONG_CHUNKS:-4}; CTX_LONG=${CTX_LONG:-2048}; CHUNKS=${CHUNKS:-40}; THREADS=${THREADS:-2}
LMP=${LMP:-$PWD/build/lmpress}
OUT=${OUT:-$PWD/bench/results/kv-eviction.md}
TEXT=../shared/data/wikitext-2/wiki.test.raw

ppl() {  # MODEL CTX CHUNKS [options...] -> "ppl stderr"
  local m=$1 c=$2 n=$3; shift 3
  "$LMP" perplexity "../shared/models/$m" -f "$TEXT" -c "$c" --chunks "$n" -t "$THREADS" --json "$@" 2> /dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["ppl"], j["ppl_stderr"])'
}
kld() {  # MODEL [options...] -> "kld unc same_top"
  local m=$1; shift
  "$LMP" kld "../shared/models/$m" "../shared/models/$m" -f "$TEXT" -c 256 --chunks "$CHUNKS" -t "$THREADS" --json "$@" 2> /dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["kld"]["value"], j["kld"]["unc"], j["same_top"]["value"])'
}

{
  echo "# KV-cache eviction policies"
  echo
  echo "\`bench/kv-eviction.sh\`, $(date -u +%Y-%m-%d), CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "(flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|f16c|fma)$' | tr '\n' ' ')), $THREADS threads."
  echo
  echo "## Past the trained context: perplexity"
  echo
  echo "$LONG_CHUNKS windows of $CTX_LONG tokens (BOS first), the second half of each scored (positions $((CTX_LONG / 2))..$((CTX_LONG - 1)),"
  echo "$((CTX_LONG / 512))x to $((CTX_LONG / 256))x the 256 positions the models were trained on); f16 cache. \"Within context\" is"
  echo "the usual \`-c 256\` measurement over the same number of tokens (every scored token with 128..255 before it)."
  echo
  echo "| model | whole window cached | sink-window:4,192 (196–211 cached) | sink-window:0,196 (no sinks) | recompute window 196 | within context (-c 256) |"
  echo "|---|---:|---:|---:|---:|---:|"
} > "$OUT.tmp"
for m in lmp-8m lmp-8m-w256; do
  row="| $m"
  for args in "" "--kv-policy sink-window:4,192" "--kv-policy sink-window:0,196" "--recompute-window 196"; do
    # shellcheck disable=SC2086
    read -r p e < <(ppl "$m" "$CTX_LONG" "$LONG_CHUNKS" $args)
    row+=$(printf ' | %.2f ± %.2f' "$p" "$e")
    echo "$m ${args:-dense}: $p" >&2
  done
  read -r p e < <(ppl "$m" 256 $((LONG_CHUNKS * CTX_LONG / 256)))
  row+=$(printf ' | %.2f ± %.2f |' "$p" "$e")
  echo "$row" >> "$OUT.tmp"
done

{
  echo
  echo "## Within the context: KL divergence from the full cache"
  echo
  echo "$CHUNKS windows of 256 tokens; the first 128 are the prompt (one evaluation), the other 128 decoded one at a"
  echo "time and scored against the same model's logits with the whole window cached (f16 both). Same top: how often"
  echo "both pick the same most likely token."
  echo
  echo "| model | budget | policy | positions cached at most | KLD | same top |"
  echo "|---|---|---|---:|---:|---:|"
} >> "$OUT.tmp"
for m in lmp-8m-w256 lmp-8m; do
  for row in "50%:sink-window:4,109:128" "50%:h2o:128:128" "50%:snapkv:64,16:192" \
             "25%:sink-window:4,45:64" "25%:h2o:64:64" "25%:snapkv:32,8:160"; do
    budget=${row%%:*}; rest=${row#*:}; most=${rest##*:}; policy=${rest%:*}
    read -r k u s < <(kld "$m" --kv-policy "$policy")
    printf '| %s | %s | %s | %s | %.5f ± %.5f | %.1f%% |\n' "$m" "$budget" "$policy" "$most" "$k" "$u" "$(python3 -c "print($s * 100)")" >> "$OUT.tmp"
    echo "$m $policy: $k" >&2
  done
done
mv "$OUT.tmp" "$OUT"
cat "$OUT"
