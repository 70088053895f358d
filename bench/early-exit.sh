#!/usr/bin/env bash
# Early exit (`--early-exit THRESHOLD --exit-layer K --exit-measure softmax|state`) on the trained models of
# ../shared: what it costs in quality and what it gains in speed.
#  - Quality: `lmpress kld MODEL MODEL --early-exit ...` (the model against itself at full depth), llama.cpp's
#    protocol on docs-calib.txt, windows of CTX tokens, the second half of each decoded one token at a time as
#    generation would (teacher-forced), so each token may exit: exit rate, mean KLD, same top token.
#  - Speed: `lmpress generate` greedy, N tokens with EOS ignored, on a docs-calib passage; each setting's runs
#    alternate with plain decoding (shared, noisy machines) and the table gives medians of ROUNDS: tokens/s, the
#    ratio to plain from the same rounds, and the generation's exit rate.
#  - Cost structure on the tinyllama-1.1b shape (random weights: costs only, its confidences mean nothing): a
#    decoding step that exits after block 10 of 22 and one that checks and goes on (threshold 1 is never reached),
#    each against a plain step.
# Usage: bench/early-exit.sh     Env: THREADS (2), ROUNDS (5), N (128), CTX (256), CHUNKS (8), OUT, WORK, LMP
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; ROUNDS=${ROUNDS:-5}; N=${N:-128}; CTX=${CTX:-256}; CHUNKS=${CHUNKS:-8}
LMP=${LMP:-$PWD/build/lmpress}
OUT=${OUT:-$PWD/bench/results/early-exit.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
CALIB=../shared/data/calib/docs-calib.txt
python3 - "$W/prompt.txt" "$CALIB" <<'EOF'
import sys
t = open(sys.argv[2]).read()
i = t.index("NILFS2 is a log-structured")
open(sys.argv[1], "w").write(t[i:i + 420])
EOF

median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
gen() {  # MODEL [options...]: "tokens_per_s exit_rate"
  local model=$1; shift
  "$LMP" generate "$model" -f "$W/prompt.txt" -n "$N" --ignore-eos --json -t "$THREADS" "$@" |
    python3 -c 'import json, sys; j = json.load(sys.stdin); e = j.get("early_exit")
print(j["gen_tokens_per_s"], e["exit_rate"] if e else 0)'
}
kld() {  # MODEL options...: "exit_rate kld same_top"
  local model=$1; shift
  "$LMP" kld "$model" "$model" -f "$CALIB" -c "$CTX" --chunks "$CHUNKS" --json -t "$THREADS" "$@" |
    python3 -c 'import json, sys; j = json.load(sys.stdin); e = j["early_exit"]
print(e["exit_rate"], j["kld"]["value"], j["same_top"]["value"])'
}

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
flags=$(grep -m1 "^flags" /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx_vnni|fma|f16c)$' | sort | tr '\n' ' ')
{
  echo "# Early exit: quality (KLD against full depth) and speed"
  echo
  echo "$(date +%F), $cpu, $(nproc) CPUs; flags: $flags"
  echo "threads $THREADS; KLD: docs-calib.txt, $CHUNKS windows of $CTX, second halves decoded token by token;"
  echo "speed: greedy, $N tokens, EOS ignored, medians of $ROUNDS rounds alternating with plain decoding (f32 models)."
  echo
  echo "| model | exit after block | measure ≥ threshold | exit rate (KLD text) | mean KLD | same top | tokens/s | plain tokens/s | ratio | exit rate (generation) |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
} > "$OUT.tmp"

for m in lmp-8m lmp-8m-w256; do
  model=../shared/models/$m
  L=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$model/config.json")
  for setting in "$((L / 2 - 1)) softmax 0.9" "$((L / 2 - 1)) softmax 0.5" "$((L / 2 - 1)) softmax 0.3" \
                 "$((L - 2)) softmax 0.5" "$((L - 2)) softmax 0.3" "$((L - 2)) state 0.995" "$((L - 2)) state 0.99"; do
    set -- $setting
    opts=(--exit-layer "$1" --exit-measure "$2" --early-exit "$3")
    read -r q_rate q_kld q_top < <(kld "$model" "${opts[@]}")
    speeds=(); plains=(); rates=()
    for _ in $(seq "$ROUNDS"); do
      read -r s r < <(gen "$model" "${opts[@]}"); speeds+=("$s"); rates+=("$r")
      read -r p _ < <(gen "$model"); plains+=("$p")
    done
    s=$(median "${speeds[@]}"); p=$(median "${plains[@]}"); r=$(median "${rates[@]}")
    python3 -c 'import sys
m, k, me, t, qr, qk, qt, s, p, r = sys.argv[1:]
print(f"| {m} | {k} | {me} ≥ {t} | {float(qr):.1%} | {float(qk):.4f} | {float(qt):.1%} | {float(s):.0f} | {float(p):.0f} | {float(s)/float(p):.2f}x | {float(r):.1%} |")' \
      "$m" "$1" "$2" "$3" "$q_rate" "$q_kld" "$q_top" "$s" "$p" "$r" >> "$OUT.tmp"
  done
done

TINY=$W/tinyllama-q4_k_m.gguf
[ -f "$TINY" ] || "$LMP" make-model --shape tinyllama-1.1b --type q4_k_m "$TINY" > /dev/null
NT=32
tiny() {  # options...: tokens/s
  "$LMP" generate "$TINY" -p "The quick brown fox" -n "$NT" --ignore-eos --json -t "$THREADS" "$@" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["gen_tokens_per_s"])'
}
ex=(); go=(); pl=()
for _ in $(seq "$ROUNDS"); do
  ex+=("$(tiny --early-exit 1e-9 --exit-layer 10)")
  go+=("$(tiny --early-exit 1 --exit-layer 10)")
  pl+=("$(tiny)")
done
{
  echo
  echo "Costs on the tinyllama-1.1b shape, Q4_K_M, random weights ($NT tokens, medians of $ROUNDS alternating rounds):"
  echo "milliseconds per decoding step."
  echo
  echo "| step | softmax measure | ratio to plain |"
  echo "|---|---:|---:|"
  python3 -c 'import statistics, sys
v = [float(x) for x in sys.argv[1:]]
n = len(v) // 3
ex, go, pl = (statistics.median(v[i * n:(i + 1) * n]) for i in range(3))
print(f"| plain | {1000 / pl:.1f} | 1.00x |")
print(f"| exits after block 10 (K/V of blocks 11..21 from its state) | {1000 / ex:.1f} | {pl / ex:.2f}x |")
print(f"| checks after block 10, goes on | {1000 / go:.1f} | {pl / go:.2f}x |")' "${ex[@]}" "${go[@]}" "${pl[@]}"
} >> "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
