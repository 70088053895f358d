#!/usr/bin/env bash
# Training throughput and memory (issue 24): `lmpress finetune` (full fine-tuning, and LoRA r=16 on all linears of
# a Q4_0 copy) beside llama.cpp's `llama-finetune` (full fine-tuning of an f32 model, the one setting it runs), on
# lmp-8m and on the smollm2-135m shape (random weights from `lmpress make-model`), context 256, one 256-token
# sequence per optimizer step (llama-finetune's -b 256), 2 threads, programs alternating for ROUNDS rounds.
# tokens/s: trained tokens over training time (llama-finetune: its progress bar's epoch time; lmpress: its own
# report, steps only); peak RSS: /usr/bin/time's maximum resident set of the whole process.
# Usage: bench/train-speed.sh   Env: ROUNDS (2), LMP (build/lmpress), OUT, WORK, THREADS (2)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}; THREADS=${THREADS:-2}
LMP=${LMP:-$PWD/build/lmpress}
BIN=$(bash ../shared/tools/build-llama-cpp.sh | tail -1)
OUT=${OUT:-$PWD/bench/results/train-speed.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
TEXT=$PWD/../shared/data/calib/docs-calib.txt
"$LMP" quantize ../shared/models/lmp-8m "$W/lmp-8m-q4_0.gguf" --type q4_0 > /dev/null
"$LMP" make-model "$W/smollm2-f32.gguf" --shape smollm2-135m --type f32 > /dev/null
"$LMP" quantize "$W/smollm2-f32.gguf" "$W/smollm2-q4_0.gguf" --type q4_0 > /dev/null
# Texts: lmp-8m about 168 windows of 256 tokens for llama-finetune (stride 128), smollm2 about 10.
head -c 60000 "$TEXT" > "$W/text-lmp.txt"; head -c 6000 "$TEXT" > "$W/text-smol.txt"; head -c 30000 "$TEXT" > "$W/text-long.txt"
rss() { grep 'Maximum resident set size' "$1" | awk '{printf "%.0f", $6 / 1024}'; }
llama_run() {  # model text -> "tokens/s rss"
  /usr/bin/time -v "$BIN/llama-finetune" -m "$1" -f "$2" -c 256 -b 256 -ub 256 -t "$THREADS" -epochs 1 -o "$W/llama-out.gguf" \
    > "$W/llama.log" 2> "$W/llama.time" || {
    # It aborts on some shapes (smollm2-135m: GGML_ASSERT(cgraph->n_nodes < cgraph->size)): recorded as 0.
    grep -m1 -o 'GGML_ASSERT.*' "$W/llama.time" > "$W/llama.failure" || echo "exit status $?" > "$W/llama.failure"
    echo "0 0"; return; }
  local line; line=$(cat "$W/llama.log" "$W/llama.time" | tr '\r' '\n' | grep -o 'train: .*data=[0-9]*/[0-9]* .*t=[0-9:]*' | tail -1)
  local n t; n=$(echo "$line" | sed -E 's/.*data=0*([0-9]+)\/.*/\1/'); t=$(echo "$line" | sed -E 's/.*t=([0-9:]+).*/\1/')
  local secs; secs=$(echo "$t" | awk -F: '{print $1*3600 + $2*60 + $3}')
  python3 -c "print('%.0f' % ($n * 256 / max($secs, 1)), '$(rss "$W/llama.time")')"
}
lmp_run() {  # model text steps extra [ctx] -> "tokens/s rss"
  /usr/bin/time -v "$LMP" finetune "$1" "$W/lmp-out.gguf" --data "$2" --steps "$3" --batch 1 --ctx "${5:-256}" --lr 1e-5 -t "$THREADS" $4 --json \
    > "$W/lmp.json" 2> "$W/lmp.time"
  python3 -c "import json; print('%.0f' % json.load(open('$W/lmp.json'))['tokens_per_s'], '$(rss "$W/lmp.time")')"
}
declare -A TPS RSS
for r in $(seq "$ROUNDS"); do
  for cfg in lmp-llama lmp-full lmp-lora smol-llama smol-full smol-lora smol-long; do
    case $cfg in
      lmp-llama) res=$(llama_run ../shared/models/lmp-8m/lmp-8m-f32.gguf "$W/text-lmp.txt") ;;
      lmp-full) res=$(lmp_run ../shared/models/lmp-8m "$W/text-lmp.txt" 60 "") ;;
      lmp-lora) res=$(lmp_run "$W/lmp-8m-q4_0.gguf" "$W/text-lmp.txt" 60 "--lora r=16,alpha=32,targets=all") ;;
      smol-llama) res=$(llama_run "$W/smollm2-f32.gguf" "$W/text-smol.txt") ;;
      smol-full) res=$(lmp_run "$W/smollm2-f32.gguf" "$W/text-smol.txt" 4 "") ;;
      smol-lora) res=$(lmp_run "$W/smollm2-q4_0.gguf" "$W/text-smol.txt" 4 "--lora r=16,alpha=32,targets=all") ;;
      smol-long) res=$(lmp_run "$W/smollm2-q4_0.gguf" "$W/text-long.txt" 2 "--lora r=16,alpha=32,targets=all" 2048) ;;
    esac
    TPS[$cfg]="${TPS[$cfg]:-} ${res% *}"; RSS[$cfg]="${RSS[$cfg]:-} ${res#* }"
  done
done
med() { python3 -c "import statistics,sys; print('%.0f' % statistics.median(map(float, sys.argv[1:])))" $1; }
{
  echo "# Training throughput: lmpress finetune and llama-finetune"
  echo
  echo "\`bench/train-speed.sh\` (ROUNDS=$ROUNDS, THREADS=$THREADS), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)."
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512_vnni|avx_vnni' | tr '\n' ' ')"
  echo
  echo "Context 256, one sequence per step, medians of $ROUNDS alternating rounds. lmpress full: f32 master weights, AdamW;"
  echo "lmpress LoRA: r=16 on all seven linears of each block, the base frozen as Q4_0; llama-finetune: full fine-tuning of the f32 file."
  echo
  echo "| model | program | tokens/s | peak RSS MiB | tokens/s vs llama-finetune |"
  echo "|---|---|---:|---:|---:|"
  for m in lmp smol; do
    name=$([ $m = lmp ] && echo lmp-8m || echo "smollm2-135m shape")
    base=$(med "${TPS[$m-llama]}")
    for p in llama full lora; do
      prog=$(case $p in llama) echo "llama-finetune (f32, full)";; full) echo "lmpress finetune (full)";; lora) echo "lmpress finetune --lora (Q4_0 base)";; esac)
      t=$(med "${TPS[$m-$p]}")
      if [ "$p" = llama ] && [ "$base" = 0 ]; then
        echo "| $name | $prog | aborts: \`$(cat "$W/llama.failure" 2>/dev/null)\` | | |"; continue
      fi
      ratio=$([ "$base" = 0 ] && echo "—" || python3 -c "print('%.2fx' % ($t / $base))")
      echo "| $name | $prog | $t | $(med "${RSS[$m-$p]}") | $ratio |"
    done
  done
  echo
  echo "Long context (flash-style attention: per query and head one log-sum-exp is kept, scores go 128 query rows at a"
  echo "time): smollm2-135m shape, LoRA r=16 on a Q4_0 base, one 2048-token sequence per step: $(med "${TPS[smol-long]}") tokens/s,"
  echo "peak RSS $(med "${RSS[smol-long]}") MiB (one block's 9 heads × 2047² f32 attention probabilities alone would be $(python3 -c 'print("%.0f" % (9 * 2047**2 * 4 / 2**20))') MiB)."
} > "$W/table.md"
cp "$W/table.md" "$OUT"
cat "$OUT"
