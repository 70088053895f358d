#!/usr/bin/env bash
# The adaptive prompt lookup against the plain one: lmpress generate on Q8_0 copies of lmp-8m and lmp-8m-w256
# (../shared, trained: acceptance is real), spec-vs-llama.sh's input-grounded prompt, greedy, 64 tokens, 2 threads;
# plain decoding, `--spec ngram --draft-p-min 0` (every match drafted whole) and `--draft-p-min PM` alternate
# ROUNDS times per draft length; medians of generation tokens/s and their ratio to plain.
# Usage: bench/ngram-p-min.sh        Env: ROUNDS (7), PM (0.75), KS ("2 4 8"), WORK, LMP (build/lmpress)
set -euo pipefail
cd "$(dirname "$0")/.."
LMP=${LMP:-$PWD/build/lmpress}; W=${WORK:-$(mktemp -d)}; R=${ROUNDS:-7}
mkdir -p "$W"
for m in lmp-8m lmp-8m-w256; do
  [ -f "$W/$m-q8_0.gguf" ] || "$LMP" convert "../shared/models/$m" "$W/$m-q8_0.gguf" --dtype q8_0 > /dev/null
done
bash bench/spec-prompt.sh "$W/prompt.txt"
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores"
run() { "$LMP" generate "$@" -f "$W/prompt.txt" -n 64 --ignore-eos --json -t 2 | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["gen_tokens_per_s"])'; }
med() { python3 -c 'import statistics,sys; print(round(statistics.median(float(x) for x in sys.argv[1:])))' "$@"; }
PM=${PM:-0.75}
echo "| target | draft | plain t/s | p-min 0 t/s | ratio | p-min $PM t/s | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for m in lmp-8m lmp-8m-w256; do
  f="$W/$m-q8_0.gguf"
  for k in ${KS:-2 4 8}; do
    P=(); A=(); B=()
    for _ in $(seq "$R"); do
      P+=("$(run "$f")")
      A+=("$(run "$f" --spec ngram --draft-max "$k" --draft-p-min 0)")
      B+=("$(run "$f" --spec ngram --draft-max "$k" --draft-p-min "$PM")")
    done
    p=$(med "${P[@]}"); a=$(med "${A[@]}"); b=$(med "${B[@]}")
    echo "| $m Q8_0 | $k | $p | $a | $(python3 -c "print(f'{$a / $p:.2f}')") | $b | $(python3 -c "print(f'{$b / $p:.2f}')") |"
  done
done
