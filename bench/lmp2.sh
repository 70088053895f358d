#!/usr/bin/env bash
# lmp2, lmpress's 2-bit format, against IQ2_XXS (and IQ2_XS, Q2_K) with an imatrix, as llama.cpp users make them.
# Quality: lmp-8m-w256 (its first 90% of docs-calib.txt lines calibrate, the last 10% are held out): file size,
# held-out PPL and KLD to the original. Speed: IQ2_XXS and lmp2 files of a real shape (random weights), `lmpress
# bench` alternating the two ROUNDS times (mean ± stddev of every repetition).
# Usage: bench/lmp2.sh   Env: MODEL (lmp-8m-w256), CTX (256), SHAPE (llama-3.2-1b), LAYERS (8), VOCAB (32000),
#   P (512), N (128), REPS (3), ROUNDS (3), THREADS (2), OUT, LMP (build/lmpress), WORK
set -euo pipefail
cd "$(dirname "$0")/.."
CTX=${CTX:-256}; SHAPE=${SHAPE:-llama-3.2-1b}; LAYERS=${LAYERS:-8}; VOCAB=${VOCAB:-32000}
P=${P:-512}; N=${N:-128}; REPS=${REPS:-3}; ROUNDS=${ROUNDS:-3}; THREADS=${THREADS:-2}
LMP=${LMP:-$PWD/build/lmpress}
MODEL=${MODEL:-$PWD/../shared/models/lmp-8m-w256}
TEXT=$PWD/../shared/data/calib/docs-calib.txt
OUT=${OUT:-$PWD/bench/results/lmp2-$(basename "$MODEL").md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
source bench/heldout.sh
"$LMP" imatrix "$MODEL" -o "$W/imatrix.gguf" -f "$W/train.txt" -c "$CTX" --chunks 128 > /dev/null
calib=(--calib "$W/train.txt" --calib-samples 128 --calib-ctx "$CTX")
"$LMP" quantize "$MODEL" "$W/iq2_xxs.gguf" --type iq2_xxs --imatrix "$W/imatrix.gguf" > /dev/null
"$LMP" quantize "$MODEL" "$W/iq2_xs.gguf" --type iq2_xs --imatrix "$W/imatrix.gguf" > /dev/null
"$LMP" quantize "$MODEL" "$W/q2_k.gguf" --type q2_k --imatrix "$W/imatrix.gguf" > /dev/null
"$LMP" quantize "$MODEL" "$W/lmp2-rtn.gguf" --type lmp2 > /dev/null
"$LMP" quantize "$MODEL" "$W/lmp2-imatrix.gguf" --type lmp2 --imatrix "$W/imatrix.gguf" > /dev/null
"$LMP" quantize "$MODEL" "$W/lmp2-gptq.gguf" --type lmp2 --method gptq "${calib[@]}" > /dev/null
row() { echo "| $1 | $(python3 -c "import os,sys; print('%.3f' % (os.path.getsize(sys.argv[1]) / 2**20))" "$2") | $(ppl "$2") | $(kld "$2") |"; }
{
  echo "# lmp2 against llama.cpp's 2-bit types ($(basename "$MODEL"))"
  echo
  echo "\`bench/lmp2.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)."
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512_vnni|avx_vnni|amx_tile' | tr '\n' ' ')"
  echo
  echo "Each file is llama.cpp's mix for its type (IQ2_XXS and IQ2_XS: attn_v, the first eighth of ffn_down and the"
  echo "token embedding Q2_K, the output Q5_K, the rest the named type; \`lmp2\` is IQ2_XXS's mix with LMP2 where it has"
  echo "IQ2_XXS, so the two files have the same size; Q2_K: its own mix). imatrix: \`lmpress imatrix\` on the first 90% of docs-calib.txt's lines"
  echo "(128 × $CTX tokens); GPTQ calibrated on 128 windows of the same part. PPL: \`lmpress perplexity -c $CTX\` on the"
  echo "last 10% (held out); KLD: \`lmpress kld $(basename "$MODEL") FILE\` on it."
  echo
  echo "| file | size (MiB) | held-out PPL | KLD |"
  echo "|---|---:|---:|---:|"
  echo "| original (F32) | $(python3 -c "import os,sys; print('%.3f' % (os.path.getsize(sys.argv[1]) / 2**20))" "$MODEL/model.safetensors") | $(ppl "$MODEL") | 0 |"
  row "Q2_K + imatrix" "$W/q2_k.gguf"
  row "IQ2_XS + imatrix" "$W/iq2_xs.gguf"
  row "IQ2_XXS + imatrix" "$W/iq2_xxs.gguf"
  row "lmp2 (RTN)" "$W/lmp2-rtn.gguf"
  row "lmp2 + imatrix" "$W/lmp2-imatrix.gguf"
  row "lmp2 + GPTQ" "$W/lmp2-gptq.gguf"
} > "$W/table.md"

# Speed: the same shape in both types, alternating.
for t in iq2_xxs lmp2; do
  "$LMP" make-model "$W/speed-$t.gguf" --shape "$SHAPE" --layers "$LAYERS" --vocab "$VOCAB" --type "$t" > /dev/null
done
for r in $(seq 1 "$ROUNDS"); do
  order="iq2_xxs lmp2"; [ $((r % 2)) -eq 0 ] && order="lmp2 iq2_xxs"
  for t in $order; do
    "$LMP" bench "$W/speed-$t.gguf" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" --no-bandwidth --json > "$W/$t.$r.json"
  done
done
python3 - "$W" "$ROUNDS" "$SHAPE" "$LAYERS" "$VOCAB" "$THREADS" >> "$W/table.md" <<'PY'
import json, os, statistics, sys
w, rounds, shape, layers, vocab, threads = sys.argv[1:]
def runs(t):
    out = {}
    for r in range(1, int(rounds) + 1):
        for rec in json.load(open(f"{w}/{t}.{r}.json")):
            k = (rec["n_prompt"], rec["n_gen"])
            out.setdefault(k, []).extend((k[0] + k[1]) * 1e9 / ns for ns in rec["samples_ns"])
    return out
a, b = runs("iq2_xxs"), runs("lmp2")
fmt = lambda ts: f"{statistics.mean(ts):.2f} ± {statistics.stdev(ts):.2f}"
print()
print(f"Speed: `lmpress make-model --shape {shape} --layers {layers} --vocab {vocab} --type iq2_xxs|lmp2` (random weights,")
print(f"{os.path.getsize(f'{w}/speed-lmp2.gguf') / 2**20:.1f} MiB each), `lmpress bench -t {threads}`, the two files alternating {rounds} times.")
print()
print("| test | IQ2_XXS t/s | lmp2 t/s | lmp2 / IQ2_XXS |")
print("|---|---:|---:|---:|")
for k in a:
    test = f"pp{k[0]}" if k[0] else f"tg{k[1]}"
    print(f"| {test} | {fmt(a[k])} | {fmt(b[k])} | {statistics.mean(b[k]) / statistics.mean(a[k]):.2f} |")
PY
cp "$W/table.md" "$OUT"
cat "$OUT"
