#!/usr/bin/env bash
# Decoding speed at a context depth by KV-cache type: `lmpress bench -p 0 -n N -d DEPTH --cache-type T` against
# `llama-bench -p 0 -n N -d DEPTH -fa 1 -ctk T -ctv T` on the same Q4_K_M file (random weights in a real model's
# shapes, lmpress make-model), THREADS threads. The two programs alternate, one type at a time (these machines are
# shared and noisy); each fills its depth once and times -n tokens decoded after it, -r times. KIVI has no
# llama.cpp counterpart. Ratios: lmpress / llama-bench for the same type and depth, and each type / f16 (lmpress).
# Usage: bench/kv-speed.sh      Env: THREADS (2), REPS (3), N (32), OUT, WORK, LMP (build/lmpress),
#                               SPECS ("smollm2-135m:4096,16384 llama-3.2-1b:4096"), TYPES ("f16 q8_0 q4_0 kivi4")
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; REPS=${REPS:-3}; N=${N:-32}
SPECS=${SPECS:-"smollm2-135m:4096,16384 llama-3.2-1b:4096"}
TYPES=${TYPES:-"f16 q8_0 q4_0 kivi4"}
LMP=${LMP:-$PWD/build/lmpress}
BIN=$(bash ../shared/tools/build-llama-cpp.sh | tail -1)
OUT=${OUT:-$PWD/bench/results/kv-speed.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
if awk -v t="$THREADS" -v n="$(nproc)" '{ exit !($1 >= 0.5 && t >= n) }' /proc/loadavg; then
  echo "warning: load average $(cut -d' ' -f1 /proc/loadavg) with THREADS=$THREADS on $(nproc) CPUs: the numbers will be distorted" >&2
fi

# "depth t/s" lines from either program's JSON.
lmp_run() {  # MODEL DEPTHS TYPE
  "$LMP" bench "$1" -p 0 -n "$N" -d "$2" -r "$REPS" -t "$THREADS" --no-bandwidth --json --cache-type "$3" 2>/dev/null |
    python3 -c 'import json,sys; [print(t["n_depth"], t["avg_ts"]) for t in json.load(sys.stdin)]'
}
llama_run() {  # MODEL DEPTHS TYPE
  "$BIN/llama-bench" -m "$1" -p 0 -n "$N" -d "$2" -r "$REPS" -t "$THREADS" -fa 1 -ctk "$3" -ctv "$3" -o json 2>/dev/null |
    python3 -c 'import json,sys; [print(t["n_depth"], t["avg_ts"]) for t in json.load(sys.stdin)]'
}

{
  echo "# Decoding at depth by KV-cache type, lmpress vs llama-bench"
  echo
  echo "\`bench/kv-speed.sh\`, $(date -u +%Y-%m-%d), CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "(flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|f16c|fma)$' | tr '\n' ' ')), $THREADS threads,"
  echo "tg$N after the depth, $REPS repetitions each, Q4_K_M weights (random, in the named model's shapes)."
  echo
  echo "| model | depth | cache | lmpress t/s | llama-bench t/s | lmpress / llama | lmpress vs its f16 |"
  echo "|---|---:|---|---:|---:|---:|---:|"
} > "$OUT.tmp"

for spec in $SPECS; do
  shape=${spec%%:*}; depths=${spec#*:}
  model="$W/$shape-q4_k_m.gguf"
  [ -f "$model" ] || "$LMP" make-model --shape "$shape" --type q4_k_m "$model" > /dev/null
  declare -A lmp=() lcp=()
  for t in $TYPES; do
    while read -r d ts; do lmp[$t:$d]=$ts; done < <(lmp_run "$model" "$depths" "$t")
    case "$t" in kivi*) ;; *) while read -r d ts; do lcp[$t:$d]=$ts; done < <(llama_run "$model" "$depths" "$t") ;; esac
    echo "$shape $t done" >&2
  done
  for d in ${depths//,/ }; do
    for t in $TYPES; do
      a=${lmp[$t:$d]}; b=${lcp[$t:$d]:-}; f=${lmp[f16:$d]:-}
      python3 -c "
a=float('$a'); b='$b'; f='$f'
r = f'{a/float(b):.2f}×' if b else '—'
rf = f'{a/float(f):.2f}×' if f else '—'
print(f'| $shape | $d | $t | {a:.2f} | ' + (f'{float(b):.2f}' if b else '—') + f' | {r} | {rf} |')" >> "$OUT.tmp"
    done
  done
  unset lmp lcp
done
mv "$OUT.tmp" "$OUT"
cat "$OUT"
