#!/usr/bin/env bash
# W8A8 speed (issue 25: pp512 of the W8A8 model ≥ 1.3× its Q8_0 file): a
# model with random weights in a real shape (make-model, F16, as checkpoints come), written as a
# compressed-tensors W8A8 checkpoint (`quantize --scheme w8a8`, RTN) and as
# a Q8_0 GGUF (`quantize --type q8_0`: llama.cpp's mix, output Q8_0 too).
# `lmpress bench` on each, alternating which goes first per round: Q8_0,
# W8A8 (I8_x8 int8 x int8 kernels), and W8A8 with --dense (the F32 weights
# on int8-rounded activations: how W8A8 ran before the int8 kernels).
# Usage: bench/w8a8-speed.sh   SHAPE (tinyllama-1.1b), LAYERS (0: all), ROUNDS (3), REPS (2), P (512), N (64),
#   THREADS (2), LMP (the binary), OUT (bench/results/w8a8-speed.md), WORK (a directory to keep the models in)
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPE=${SHAPE:-tinyllama-1.1b}; LAYERS=${LAYERS:-0}; ROUNDS=${ROUNDS:-3}; REPS=${REPS:-2}
P=${P:-512}; N=${N:-64}; THREADS=${THREADS:-2}
LMP=${LMP:-$PWD/build/lmpress}
OUT=${OUT:-$PWD/bench/results/w8a8-speed.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
F16=$W/$SHAPE-l$LAYERS-f16.gguf
[ -f "$F16" ] || "$LMP" make-model --shape "$SHAPE" --layers "$LAYERS" --type f16 "$F16" > /dev/null
[ -d "$W/w8a8" ] || "$LMP" quantize "$F16" "$W/w8a8" --scheme w8a8 > /dev/null
[ -f "$W/q8_0.gguf" ] || "$LMP" quantize "$F16" "$W/q8_0.gguf" --type q8_0 > /dev/null
run() {  # name model [extra bench options]
  local name=$1 model=$2
  shift 2
  "$LMP" bench "$model" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" --json "$@" > "$W/$name.$r.json"
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then
    run q8_0 "$W/q8_0.gguf"; run w8a8 "$W/w8a8"; run w8a8-f32 "$W/w8a8" --dense
  else
    run w8a8-f32 "$W/w8a8" --dense; run w8a8 "$W/w8a8"; run q8_0 "$W/q8_0.gguf"
  fi
done
{
  echo "# W8A8 against Q8_0: $SHAPE (layers: ${LAYERS/#0/all}), random weights"
  echo
  echo "\`bench/w8a8-speed.sh\` ($(date -u +%F), ROUNDS=$ROUNDS REPS=$REPS, $THREADS threads)."
  echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores;" \
    "flags: $(grep -m1 -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512_vnni|avx_vnni|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo
  python3 - "$W" "$ROUNDS" <<'PY'
import json, statistics, sys
w, rounds = sys.argv[1], int(sys.argv[2])
def runs(name):  # test -> every repetition's t/s over all rounds
    out = {}
    for r in range(1, rounds + 1):
        for rec in json.load(open(f"{w}/{name}.{r}.json")):
            test = f"pp{rec['n_prompt']}" if rec["n_prompt"] else f"tg{rec['n_gen']}"
            out.setdefault(test, []).extend((rec["n_prompt"] + rec["n_gen"]) * 1e9 / ns for ns in rec["samples_ns"])
    return out
q8, w8, f32 = runs("q8_0"), runs("w8a8"), runs("w8a8-f32")
fmt = lambda ts: f"{statistics.mean(ts):.2f} ± {statistics.stdev(ts) if len(ts) > 1 else 0:.2f}"
print("| test | Q8_0 t/s | W8A8 I8_x8 t/s | W8A8 F32 path (--dense) t/s | W8A8 / Q8_0 | W8A8 / F32 path |")
print("|---|---:|---:|---:|---:|---:|")
for test in q8:
    m = statistics.mean
    print(f"| {test} | {fmt(q8[test])} | {fmt(w8[test])} | {fmt(f32[test])} | {m(w8[test]) / m(q8[test]):.2f} | "
          f"{m(w8[test]) / m(f32[test]):.2f} |")
PY
} > "$OUT"
cat "$OUT"
