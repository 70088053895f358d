#!/usr/bin/env bash
# Quantization-aware training with learned scales (issue 24): for each TYPE, the model quantized by RTN, by GPTQ,
# by QAT on round-to-nearest scales, and by QAT with learned (LSQ) scales, each QAT run a distillation from the
# original on docs-calib.txt's first 90% of lines; PPL (llama.cpp protocol) and KLD to the original on the last 10%.
# Then distillation from saved top-k teacher logits against the live teacher (PART topk): time and quality.
# Usage: bench/qat-scales.sh   Env: TYPES ("q4_0 int3-g64"), PARTS ("qat topk"), STEPS (200), BATCH (8), CTX (256),
#   LR (1e-4), TOPK (64), MODEL (lmp-8m-w256), OUT, LMP (build/lmpress), WORK
set -euo pipefail
cd "$(dirname "$0")/.."
TYPES=${TYPES:-"q4_0 int3-g64"}; PARTS=${PARTS:-"qat topk"}
STEPS=${STEPS:-200}; BATCH=${BATCH:-8}; CTX=${CTX:-256}; LR=${LR:-1e-4}; TOPK=${TOPK:-64}
LMP=${LMP:-$PWD/build/lmpress}
MODEL=${MODEL:-$PWD/../shared/models/lmp-8m-w256}
TEXT=$PWD/../shared/data/calib/docs-calib.txt
OUT=${OUT:-$PWD/bench/results/qat-scales-$(basename "$MODEL").md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
source bench/heldout.sh
secs() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f" % d["seconds"])' "$1"; }
# An output path: a directory for int-N types, a .gguf file otherwise.
out() { case $1 in int*) echo "$W/$2-$1";; *) echo "$W/$2-$1.gguf";; esac; }
train=(--teacher "$MODEL" --loss kl --data "$W/train.txt" --steps "$STEPS" --batch "$BATCH" --ctx "$CTX" --lr "$LR" --warmup 20 --json)
dense=$(ppl "$MODEL")
{
  echo "# QAT with learned scales, and distillation from saved teacher logits ($(basename "$MODEL"))"
  echo
  echo "\`bench/qat-scales.sh\` (STEPS=$STEPS BATCH=$BATCH CTX=$CTX LR=$LR TOPK=$TOPK), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)."
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512_vnni|avx_vnni|amx_tile' | tr '\n' ' ')"
  echo
  echo "Text: docs-calib.txt, first 90% of its lines to calibrate and train on, last 10% held out. QAT:"
  echo "\`lmpress finetune $(basename "$MODEL") OUT --qat TYPE [--qat-learn-scales] --teacher $(basename "$MODEL") --loss kl --steps $STEPS --batch $BATCH --ctx $CTX --lr $LR --warmup 20\`"
  echo "($((STEPS * BATCH * (CTX - 1))) tokens); GPTQ calibrated on 128 windows of the training part. PPL: \`lmpress perplexity -c $CTX\` on the"
  echo "held-out text (dense: $dense); KLD: \`lmpress kld $(basename "$MODEL") OUT\` on it."
  echo
} > "$W/table.md"
if [[ " $PARTS " == *" qat "* ]]; then
  {
    echo "| type | RTN PPL | RTN KLD | GPTQ PPL | GPTQ KLD | QAT PPL | QAT KLD | QAT + learned scales PPL | KLD | QAT s | learned s |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  } >> "$W/table.md"
  for t in $TYPES; do
    "$LMP" quantize "$MODEL" "$(out "$t" rtn)" --type "$t" > /dev/null
    "$LMP" quantize "$MODEL" "$(out "$t" gptq)" --type "$t" --method gptq --calib "$W/train.txt" --calib-samples 128 \
      --calib-ctx "$CTX" > /dev/null
    "$LMP" finetune "$MODEL" "$(out "$t" qat)" --qat "$t" "${train[@]}" > "$W/qat-$t.json"
    "$LMP" finetune "$MODEL" "$(out "$t" lsq)" --qat "$t" --qat-learn-scales "${train[@]}" > "$W/lsq-$t.json"
    row="| $t"
    for q in rtn gptq qat lsq; do row="$row | $(ppl "$(out "$t" $q)") | $(kld "$(out "$t" $q)")"; done
    echo "$row | $(secs "$W/qat-$t.json") | $(secs "$W/lsq-$t.json") |" >> "$W/table.md"
  done
fi
if [[ " $PARTS " == *" topk "* ]]; then
  # A 2:4 SparseGPT student distilled from the live teacher, and from its top-TOPK logits saved once (the saving
  # run's own time, then a rerun that reads them and loads no teacher).
  "$LMP" prune "$MODEL" "$W/sp24.gguf" --method sparsegpt --nm 2:4 --calib "$W/train.txt" --calib-samples 128 \
    --calib-ctx "$CTX" > /dev/null
  kd=(--loss kl --data "$W/train.txt" --steps "$STEPS" --batch "$BATCH" --ctx "$CTX" --lr 3e-4 --warmup 20 --json)
  "$LMP" finetune "$W/sp24.gguf" "$W/kd-live.gguf" --teacher "$MODEL" "${kd[@]}" > "$W/kd-live.json"
  t0=$(date +%s.%N)
  "$LMP" finetune "$W/sp24.gguf" "$W/kd-save.gguf" --teacher "$MODEL" --save-teacher-logits "$W/t.kld" \
    --teacher-top-k "$TOPK" "${kd[@]}" > "$W/kd-save.json"
  t1=$(date +%s.%N)
  "$LMP" finetune "$W/sp24.gguf" "$W/kd-read.gguf" --teacher-logits "$W/t.kld" "${kd[@]}" > "$W/kd-read.json"
  t2=$(date +%s.%N)
  cmp -s "$W/kd-save.gguf" "$W/kd-read.gguf" && same="yes" || same="NO"
  {
    echo
    echo "2:4 SparseGPT student (PPL $(ppl "$W/sp24.gguf"), KLD $(kld "$W/sp24.gguf")) distilled with \`--loss kl --steps $STEPS --batch $BATCH"
    echo "--ctx $CTX --lr 3e-4\`; the saved file holds the teacher's top $TOPK logits at each of the $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["windows"])' "$W/kd-save.json") training windows' positions"
    echo "($(du -m "$W/t.kld" | cut -f1) MiB). The run that reads it writes the same bytes as the run that saved it: $same."
    echo
    echo "| teacher | PPL | KLD | command s (wall) | training tokens/s |"
    echo "|---|---:|---:|---:|---:|"
    tps() { python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["tokens_per_s"])' "$1"; }
    echo "| the model (live) | $(ppl "$W/kd-live.gguf") | $(kld "$W/kd-live.gguf") | $(secs "$W/kd-live.json") (training) | $(tps "$W/kd-live.json") |"
    echo "| saving its top $TOPK, then training on them | $(ppl "$W/kd-save.gguf") | $(kld "$W/kd-save.gguf") | $(python3 -c "print('%.0f' % ($t1 - $t0))") | $(tps "$W/kd-save.json") |"
    echo "| reading the saved logits | $(ppl "$W/kd-read.gguf") | $(kld "$W/kd-read.gguf") | $(python3 -c "print('%.0f' % ($t2 - $t1))") | $(tps "$W/kd-read.json") |"
  } >> "$W/table.md"
fi
cp "$W/table.md" "$OUT"
cat "$OUT"
