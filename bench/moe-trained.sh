#!/usr/bin/env bash
# A trained mixture of experts made here (issue 27), and what compression does to it: lmp-8m upcycled into 8
# neuron-slice experts with 2 used per token (`convert --split-experts 8 --experts-used 2`), distilled from the
# dense lmp-8m on docs-calib.txt; then expert pruning at 50% (REAP, frequency; llama-perplexity on the same
# files) and expert-aware mixed precision (the hot or cold quarter of each layer's experts at Q8_0, the rest Q4_0,
# ranked by the imatrix's routed-token counts) measured as KLD to the trained model. Held-out: WikiText-2 test.
# Usage: bench/moe-trained.sh   Env: STEPS (400), BATCH (8), CTX (256), LR (5e-4), CHUNKS (40), OUT, LMP, WORK
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-400}; BATCH=${BATCH:-8}; CTX=${CTX:-256}; LR=${LR:-5e-4}; CHUNKS=${CHUNKS:-40}
LMP=${LMP:-$PWD/build/lmpress}
LLAMA=${LLAMA:-$(bash ../shared/tools/build-llama-cpp.sh)}
MODEL=$PWD/../shared/models/lmp-8m/lmp-8m-f32.gguf
TRAIN=$PWD/../shared/data/calib/docs-calib.txt
TEST=$PWD/../shared/data/wikitext-2/wiki.test.raw
OUT=${OUT:-$PWD/bench/results/moe-trained.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
ppl() { "$LMP" perplexity "$1" -f "$TEST" --ctx "$CTX" --chunks "$CHUNKS" --json | python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['ppl'])"; }
llama_ppl() { "$LLAMA/llama-perplexity" -m "$1" -f "$TEST" -c "$CTX" --chunks "$CHUNKS" -t 2 2>&1 | grep -o 'Final estimate: PPL = [0-9.]*' | awk '{print $NF}'; }
kld() { "$LMP" kld "$W/trained.gguf" "$1" -f "$TEST" --ctx "$CTX" --chunks "$CHUNKS" --json | python3 -c "import json,sys; print('%.5f' % json.load(sys.stdin)['kld']['value'])"; }
mib() { python3 -c "import os,sys; print('%.2f' % (os.path.getsize(sys.argv[1]) / 2**20))" "$1"; }

"$LMP" convert "$MODEL" "$W/split.gguf" --split-experts 8 --experts-used 2 >/dev/null
t0=$(date +%s)
"$LMP" finetune "$W/split.gguf" "$W/trained.gguf" --teacher "$MODEL" --loss kl --data "$TRAIN" --steps "$STEPS" \
  --batch "$BATCH" --ctx "$CTX" --lr "$LR" --warmup 20 --seed 1 > "$W/train.log"
train_s=$(( $(date +%s) - t0 ))
"$LMP" imatrix "$W/trained.gguf" -f "$TRAIN" -o "$W/moe.imatrix.gguf" --chunks 32 -c "$CTX" > "$W/imatrix.log" 2>&1
for m in reap frequency; do
  "$LMP" prune "$W/trained.gguf" "$W/p-$m.gguf" --experts 4 --method "$m" --calib "$TRAIN" --calib-ctx "$CTX" \
    --calib-samples 16 > /dev/null
done
base=(--type q8_0 --pure --imatrix "$W/moe.imatrix.gguf" --tensor-type ffn_gate_exps=q4_0 --tensor-type ffn_up_exps=q4_0
      --tensor-type ffn_down_exps=q4_0)
"$LMP" quantize "$W/trained.gguf" "$W/e-q4.gguf" "${base[@]}" > /dev/null 2>&1
"$LMP" quantize "$W/trained.gguf" "$W/e-hot.gguf" "${base[@]}" --expert-type hot:0.25=q8_0 > /dev/null 2>&1
"$LMP" quantize "$W/trained.gguf" "$W/e-cold.gguf" "${base[@]}" --expert-type cold:0.25=q8_0 > /dev/null 2>&1
"$LMP" quantize "$W/trained.gguf" "$W/e-q8.gguf" --type q8_0 --pure > /dev/null 2>&1
counts=$(PYTHONPATH=$(bash ../shared/tools/build-llama-cpp.sh --src)/gguf-py /usr/bin/python3 -c "
import gguf, numpy as np, sys
r = gguf.GGUFReader(sys.argv[1])
for t in r.tensors:
    if t.name.endswith('ffn_gate_exps.weight.counts'):
        print('| %s | %s |' % (t.name.split('.')[1], ' '.join(str(int(x)) for x in np.array(t.data).flatten())))
" "$W/moe.imatrix.gguf")
{
  echo "# A trained mixture of experts: lmp-8m upcycled, distilled, then compressed"
  echo
  echo "\`bench/moe-trained.sh\` (STEPS=$STEPS BATCH=$BATCH CTX=$CTX LR=$LR), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)."
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512_vnni|avx_vnni' | tr '\n' ' ')"
  echo
  echo "\`lmpress convert lmp-8m split.gguf --split-experts 8 --experts-used 2\`: each block's 768 feed-forward neurons in 8"
  echo "experts of 96, 2 used per token, the router starting from each slice's mean gate row; then"
  echo "\`lmpress finetune split.gguf trained.gguf --teacher lmp-8m --loss kl --data docs-calib.txt --steps $STEPS --batch $BATCH"
  echo "--ctx $CTX --lr $LR --warmup 20\` ($((STEPS * BATCH * (CTX - 1))) tokens, ${train_s} s on 2 threads: every weight trains, the"
  echo "routers included). Perplexity: WikiText-2 test, $CHUNKS windows of $CTX (held out: trained on docs-calib.txt)."
  echo
  echo "| model | experts (used) | size MiB | PPL lmpress | PPL llama.cpp |"
  echo "|---|---|---:|---:|---:|"
  echo "| lmp-8m (dense) | - | $(mib "$MODEL") | $(ppl "$MODEL") | $(llama_ppl "$MODEL") |"
  echo "| upcycled, untrained | 8 (2) | $(mib "$W/split.gguf") | $(ppl "$W/split.gguf") | $(llama_ppl "$W/split.gguf") |"
  echo "| upcycled and distilled | 8 (2) | $(mib "$W/trained.gguf") | $(ppl "$W/trained.gguf") | $(llama_ppl "$W/trained.gguf") |"
  for m in reap frequency; do
    echo "| distilled, half the experts pruned by $m | 4 (2) | $(mib "$W/p-$m.gguf") | $(ppl "$W/p-$m.gguf") | $(llama_ppl "$W/p-$m.gguf") |"
  done
  echo
  echo "Tokens routed to each expert of the distilled model (\`lmpress imatrix\`, 32 windows of docs-calib.txt, 2 per"
  echo "token): the upper layers route most tokens to a few experts."
  echo
  echo "| block | tokens per expert 0..7 |"
  echo "|---|---|"
  echo "$counts"
  echo
  echo "Expert-aware mixed precision (\`quantize --expert-type\`): every tensor Q8_0 but the experts, Q4_0; then the"
  echo "quarter of each layer's experts that saw the most (hot) or the fewest (cold) routed tokens in the imatrix back to"
  echo "Q8_0 — the same bytes either way. KLD: to the distilled f32 model on the held-out text (lower is better)."
  echo
  echo "| file | size MiB | KLD | PPL |"
  echo "|---|---:|---:|---:|"
  echo "| all Q8_0 | $(mib "$W/e-q8.gguf") | $(kld "$W/e-q8.gguf") | $(ppl "$W/e-q8.gguf") |"
  echo "| experts Q4_0 | $(mib "$W/e-q4.gguf") | $(kld "$W/e-q4.gguf") | $(ppl "$W/e-q4.gguf") |"
  echo "| experts Q4_0, hot quarter Q8_0 | $(mib "$W/e-hot.gguf") | $(kld "$W/e-hot.gguf") | $(ppl "$W/e-hot.gguf") |"
  echo "| experts Q4_0, cold quarter Q8_0 | $(mib "$W/e-cold.gguf") | $(kld "$W/e-cold.gguf") | $(ppl "$W/e-cold.gguf") |"
  echo
  echo "Files whose layers hold experts of two types are written expert by expert (lmpress reads them; llama.cpp"
  echo "stacks a layer's experts in one tensor of one type and cannot load them)."
} > "$OUT"
cat "$OUT"
