#!/usr/bin/env bash
# Speed side by side with llama.cpp's llama-bench on the same GGUF files:
# models with random weights in real shapes (lmpress make-model), each file
# type, pp512 and tg128 with 2 threads. Writes a Markdown table with the
# lmpress / llama.cpp ratio and the share of the memory-bandwidth bound.
# Usage: bench/speed-vs-llama.sh [SHAPES] [TYPES]
#   defaults: "smollm2-135m tinyllama-1.1b" "q4_0 q4_k_m q8_0 f16"; REPS (3), THREADS (2), P (512), N (128),
#   ROUNDS (2): per file, the two programs run back to back ROUNDS times, who goes first alternating, and each
#   column is the mean ± stddev of all their repetitions: a shared VM's speed drifts by tens of percent within
#   minutes, and a single back-to-back pair can land on either side of a drift. LAYERS: keep the first N blocks
#   of each shape (make-model --layers; the mixtures of experts' shapes are larger than this machine's memory).
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPES=${1:-"smollm2-135m tinyllama-1.1b"}
TYPES=${2:-"q4_0 q4_k_m q8_0 f16"}
REPS=${REPS:-3}; THREADS=${THREADS:-2}; P=${P:-512}; N=${N:-128}; ROUNDS=${ROUNDS:-2}; LAYERS=${LAYERS:-0}
SHARED=$(cd ../shared && pwd)
LMP=$PWD/build/lmpress
BIN=$(bash "$SHARED/tools/build-llama-cpp.sh" | tail -1)
OUT=${OUT:-$PWD/bench/results/speed-vs-llama.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
{
  # The machine the numbers come from: its CPU model and the vector extensions the kernels may use.
  echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores;" \
    "flags: $(grep -m1 -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512_vnni|avx512vbmi|avx_vnni|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo
  echo "| model | type | size (MiB) | test | llama.cpp t/s | lmpress t/s | lmpress / llama.cpp | lmpress % of bandwidth bound |"
  echo "|---|---|---:|---|---:|---:|---:|---:|"
} > "$OUT"
for s in $SHAPES; do
  for t in $TYPES; do
    f="$W/$s-$t-l$LAYERS.gguf"
    [ -f "$f" ] || "$LMP" make-model --shape "$s" --layers "$LAYERS" --type "$t" "$f" > /dev/null
    for r in $(seq 1 "$ROUNDS"); do
      run_llama() { "$BIN/llama-bench" -m "$f" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" -o json 2> /dev/null > "$W/llama.$r.json"; }
      run_lmp() { "$LMP" bench "$f" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" --json > "$W/lmp.$r.json"; }
      if [ $((r % 2)) -eq 1 ]; then run_llama; run_lmp; else run_lmp; run_llama; fi
    done
    python3 - "$s" "$t" "$f" "$W" "$ROUNDS" >> "$OUT" <<'PY'
import json, os, statistics, sys
shape, typ, f, w, rounds = sys.argv[1:]
def runs(prog):  # (n_prompt, n_gen) -> every repetition's t/s over all rounds, and the last run's record
    out = {}
    for r in range(1, int(rounds) + 1):
        for rec in json.load(open(f"{w}/{prog}.{r}.json")):
            k = (rec["n_prompt"], rec["n_gen"])
            ts = [(k[0] + k[1]) * 1e9 / ns for ns in rec["samples_ns"]]
            out.setdefault(k, [[], rec])[0].extend(ts)
            out[k][1] = rec
    return out
llama, lmp = runs("llama"), runs("lmp")
fmt = lambda ts: f"{statistics.mean(ts):.2f} ± {statistics.stdev(ts) if len(ts) > 1 else 0:.2f}"
for k, (ts, rec) in lmp.items():
    lts = llama[k][0]
    test = f"pp{k[0]}" if k[0] else f"tg{k[1]}"
    share = "-"
    if "bandwidth_bound_share" in rec:  # the share for the mean over all rounds, against the last run's triad
        share = f"{100 * rec['bandwidth_bound_share'] * statistics.mean(ts) / rec['avg_ts']:.1f}%"
    layers = os.environ.get("LAYERS", "0")
    label = shape if layers == "0" else f"{shape} ({layers} layers)"
    print(f"| {label} | {typ} | {os.path.getsize(f) / 2**20:.1f} | {test} | {fmt(lts)} | {fmt(ts)} | "
          f"{statistics.mean(ts) / statistics.mean(lts):.2f} | {share} |")
PY
  done
done
cat "$OUT"
