#!/usr/bin/env bash
# Recovery by distillation (issue 24): compress lmp-8m, then train the compressed model towards the original
# (forward KL on the original's logits) on docs-calib.txt with its last 10% held out, and report the held-out
# perplexity (llama.cpp protocol, -c 256) and KLD to the original before and after, with the time taken.
# Students: 2:4 SparseGPT (zeros kept while training) and structured 25% of the MLP channels (Wanda-style ranking)
# (PARTS prune); Q2_K by quantization-aware training against RTN and GPTQ Q2_K (PARTS quant).
# Usage: bench/recover.sh   Env: PARTS ("prune quant"), STEPS (500), BATCH (8), CTX (256), LR (3e-4),
#   QAT_LR (1e-4), OUT, LMP (build/lmpress), WORK
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-500}; BATCH=${BATCH:-8}; CTX=${CTX:-256}; LR=${LR:-3e-4}; QAT_LR=${QAT_LR:-1e-4}
PARTS=${PARTS:-"prune quant"}
LMP=${LMP:-$PWD/build/lmpress}
MODEL=${MODEL:-$PWD/../shared/models/lmp-8m}
TEXT=$PWD/../shared/data/calib/docs-calib.txt
OUT=${OUT:-$PWD/bench/results/recover-lmp-8m.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
source bench/heldout.sh
dense=$(ppl "$MODEL")
tokens=$((STEPS * BATCH * (CTX - 1)))
{
  echo "# Recovery of compressed $(basename "$MODEL") by distillation"
  echo
  echo "\`bench/recover.sh\` (STEPS=$STEPS BATCH=$BATCH CTX=$CTX LR=$LR), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)."
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512_vnni|avx_vnni|amx_tile' | tr '\n' ' ')"
  echo
  echo "Text: docs-calib.txt, first 90% of its lines to calibrate and train on, last 10% held out. Training:"
  echo "\`lmpress finetune STUDENT OUT --teacher $(basename "$MODEL") --loss kl --steps $STEPS --batch $BATCH --ctx $CTX --lr $LR --warmup 20\`"
  echo "($tokens tokens; the 2:4 student's zeros stay zero). PPL: \`lmpress perplexity -c $CTX\` on the held-out text (llama.cpp protocol);"
  echo "KLD: \`lmpress kld $(basename "$MODEL") STUDENT\`, mean over the held-out text. Gap closed: (PPL before − after) / (PPL before − dense)."
  echo
} > "$W/table.md"
if [[ " $PARTS " == *" prune "* ]]; then
"$LMP" prune "$MODEL" "$W/sp24.gguf" --method sparsegpt --nm 2:4 --calib "$W/train.txt" --calib-samples 128 --calib-ctx "$CTX" > /dev/null
"$LMP" prune "$MODEL" "$W/ffn25.gguf" --structured ffn=0.25 --calib "$W/train.txt" --calib-samples 128 --calib-ctx "$CTX" > /dev/null
{
  echo "| student | PPL dense | PPL before | PPL after | gap closed | KLD before | KLD after | training s | tokens/s |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
} >> "$W/table.md"
for s in sp24 ffn25; do
  before=$(ppl "$W/$s.gguf"); kb=$(kld "$W/$s.gguf")
  "$LMP" finetune "$W/$s.gguf" "$W/$s-kd.gguf" --teacher "$MODEL" --loss kl --data "$W/train.txt" --steps "$STEPS" \
    --batch "$BATCH" --ctx "$CTX" --lr "$LR" --warmup 20 --json > "$W/$s-kd.json"
  after=$(ppl "$W/$s-kd.gguf"); ka=$(kld "$W/$s-kd.gguf")
  read -r secs tps < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f %.0f" % (d["seconds"], d["tokens_per_s"]))' "$W/$s-kd.json")
  gap=$(python3 -c "print('%.0f%%' % (100 * ($before - $after) / ($before - $dense)))")
  name=$([ $s = sp24 ] && echo "2:4 SparseGPT" || echo "structured, 25% of MLP channels")
  echo "| $name | $dense | $before | $after | $gap | $kb | $ka | $secs | $tps |" >> "$W/table.md"
done
fi
if [[ " $PARTS " == *" quant "* ]]; then
  # Q2_K three ways: RTN, GPTQ (calibrated on the training part), and QAT: the original's weights trained
  # fake-quantized to Q2_K's mix by distillation from the original, then written as Q2_K.
  "$LMP" quantize "$MODEL" "$W/q2k-rtn.gguf" --type q2_k > /dev/null
  "$LMP" quantize "$MODEL" "$W/q2k-gptq.gguf" --type q2_k --method gptq --calib "$W/train.txt" --calib-samples 128 --calib-ctx "$CTX" > /dev/null
  "$LMP" finetune "$MODEL" "$W/q2k-qat.gguf" --qat q2_k --teacher "$MODEL" --loss kl --data "$W/train.txt" --steps "$STEPS" \
    --batch "$BATCH" --ctx "$CTX" --lr "$QAT_LR" --warmup 20 --json > "$W/q2k-qat.json"
  read -r secs tps < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f %.0f" % (d["seconds"], d["tokens_per_s"]))' "$W/q2k-qat.json")
  {
    echo
    echo "Q2_K (llama.cpp's mix): QAT is \`lmpress finetune $(basename "$MODEL") OUT --qat q2_k"
    echo "--teacher $(basename "$MODEL") --loss kl --steps $STEPS --batch $BATCH --ctx $CTX --lr $QAT_LR --warmup 20\` ($secs s, $tps tokens/s); GPTQ calibrated"
    echo "on 128 windows of the training part."
    echo
    echo "| Q2_K by | PPL (dense $dense) | KLD |"
    echo "|---|---:|---:|"
    for q in rtn gptq qat; do
      echo "| $(case $q in rtn) echo RTN;; gptq) echo GPTQ;; qat) echo "QAT (distillation)";; esac) | $(ppl "$W/q2k-$q.gguf") | $(kld "$W/q2k-$q.gguf") |"
    done
  } >> "$W/table.md"
fi
cp "$W/table.md" "$OUT"
cat "$OUT"
