#!/usr/bin/env bash
# Speculative decoding on the real models of ../shared: `lmpress generate --spec TYPE` against lmpress's plain
# decoding, and prompt lookup / a draft model against llama.cpp's llama-lookup / llama-speculative on the same GGUF
# files, prompt and draft length. Greedy, -n tokens with EOS ignored, THREADS threads. Each row's runs alternate with
# plain runs (these machines are shared and noisy) and report medians: generation tokens/s (lmpress: --json's
# gen_tokens_per_s; llama.cpp: its "decoded N tokens ... speed" line), the ratio to lmpress plain from the same
# rounds, and the share of drafted tokens the target accepted. Acceptance is measured on trained models (lmp-8m,
# lmp-8m-w256: the same tokenizer, each the other's draft), so it is real; these 8M-parameter models fit in L3, so
# a verification pass of k tokens costs more than one token's pass here than on a memory-bound model.
# The prompt is input-grounded: a passage of docs-calib.txt, then its first sentence again to be continued.
# Then the cost side on a 1.1B shape with random weights (see below).
# Usage: bench/spec-vs-llama.sh        Env: THREADS (2), ROUNDS (5), N (64), OUT, WORK, LMP (build/lmpress)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; ROUNDS=${ROUNDS:-5}; N=${N:-64}
LMP=${LMP:-$PWD/build/lmpress}
BIN=$(bash ../shared/tools/build-llama-cpp.sh | tail -1)
OUT=${OUT:-$PWD/bench/results/spec-vs-llama.md}
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
if awk -v t="$THREADS" -v n="$(nproc)" '{ exit !($1 >= 0.5 && t >= n) }' /proc/loadavg; then
  echo "warning: load average $(cut -d' ' -f1 /proc/loadavg) with THREADS=$THREADS on $(nproc) CPUs: the numbers will be distorted" >&2
fi

for m in lmp-8m lmp-8m-w256; do
  [ -f "$W/$m-q8_0.gguf" ] || "$LMP" convert "../shared/models/$m" "$W/$m-q8_0.gguf" --dtype q8_0 > /dev/null
  [ -f "$W/$m-q4_0.gguf" ] || "$LMP" convert "../shared/models/$m" "$W/$m-q4_0.gguf" --dtype q4_0 > /dev/null
done
bash bench/spec-prompt.sh "$W/prompt.txt"

# One run: prints "tokens_per_s acceptance" (acceptance "-" for plain decoding).
lmp_run() {  # MODEL [generate options...]
  local model=$1; shift
  "$LMP" generate "$model" -f "$W/prompt.txt" -n "$N" --ignore-eos --json -t "$THREADS" "$@" |
    python3 -c 'import json, sys; j = json.load(sys.stdin); s = j.get("spec")
print(j["gen_tokens_per_s"], s["acceptance_rate"] if s else "-")'
}
llama_run() {  # PROGRAM MODEL [options...]
  local prog=$1 model=$2; shift 2
  "$BIN/$prog" -m "$model" -f "$W/prompt.txt" -n "$N" --ignore-eos --temp 0 -t "$THREADS" "$@" 2>&1 |
    python3 -c 'import re, sys
t = sys.stdin.read()
speed = re.search(r"decoded\s+\d+ tokens in\s+[\d.]+ seconds, speed:\s+([\d.]+) t/s", t)
acc = re.search(r"accept\s+=\s+([\d.]+)%", t)
print(speed.group(1) if speed else "nan", float(acc.group(1)) / 100 if acc else "-")'
}
median() { python3 -c 'import statistics, sys; v = [float(x) for x in sys.argv[1:] if x not in ("-", "nan")]; print(statistics.median(v) if v else "nan")' "$@"; }

ROWS="$W/rows.tsv"
: > "$ROWS"
row() {  # TARGET LABEL KIND(lmp|PROGRAM) ARGS...
  local target=$1 label=$2 kind=$3; shift 3
  local speeds=() plains=() accs=()
  for _ in $(seq "$ROUNDS"); do
    read -r p _ < <(lmp_run "$target")
    plains+=("$p")
    if [ "$kind" = lmp ]; then read -r s a < <(lmp_run "$target" "$@"); else read -r s a < <(llama_run "$kind" "$target" "$@"); fi
    speeds+=("$s"); accs+=("$a")
  done
  local sp pl ac
  sp=$(median "${speeds[@]}"); pl=$(median "${plains[@]}"); ac=$(median "${accs[@]}")
  printf '%s\t%s\t%s\t%s\t%s\n' "$(basename "$target" .gguf)" "$label" "$sp" "$pl" "$ac" >> "$ROWS"
  echo "$(basename "$target" .gguf) $label: $sp tokens/s (plain $pl), acceptance $ac" >&2
}

for pair in "lmp-8m-w256 lmp-8m" "lmp-8m lmp-8m-w256"; do
  read -r t d <<< "$pair"
  T="$W/$t-q8_0.gguf"; D="$W/$d-q8_0.gguf"
  L=$("$LMP" info "$T" --json --no-tensors | python3 -c 'import json, sys; print(json.load(sys.stdin)["config"]["num_layers"])')
  for k in 2 4 8; do
    row "$T" "lmpress ngram, draft $k" lmp --spec ngram --draft-max "$k"
    row "$T" "llama-lookup, draft $k" llama-lookup --spec-draft-n-max "$k"
  done
  for k in 2 4 8; do
    row "$T" "lmpress draft:$d, draft $k" lmp --spec "draft:$D" --draft-max "$k" --draft-p-min 0
    row "$T" "llama-speculative -md $d, draft $k" llama-speculative -md "$D" --spec-draft-n-max "$k" --spec-draft-p-min 0
  done
  for k in 2 4 8; do
    row "$T" "lmpress self:file ($t Q4_0), draft $k" lmp --spec "self:file:$W/$t-q4_0.gguf" --draft-max "$k" --draft-p-min 0
    row "$T" "lmpress self:exit:$((L - 3)), draft $k" lmp --spec "self:exit:$((L - 3))" --draft-max "$k" --draft-p-min 0
    row "$T" "lmpress self:skip:$((L / 2)), draft $k" lmp --spec "self:skip:$((L / 2))" --draft-max "$k" --draft-p-min 0
  done
done

# Costs on a memory-sized model (random weights: acceptance there means nothing, so drafts are forced with a
# one-block self:exit draft at --draft-p-min 0): one plain decoding step against one verification pass of 1 + k
# tokens, the ratio a draft must beat.
COSTS="$W/costs.tsv"
: > "$COSTS"
for t in q4_k_m q8_0; do
  f="$W/tinyllama-1.1b-$t.gguf"
  [ -f "$f" ] || "$LMP" make-model --shape tinyllama-1.1b --type "$t" "$f" > /dev/null
  for _ in $(seq "$ROUNDS"); do
    "$LMP" generate "$f" -p "hello world" -n 32 --ignore-eos --json -t "$THREADS" |
      python3 -c 'import json, sys; j = json.load(sys.stdin); print("'"$t"'\t0\t%f" % (1000 / j["gen_tokens_per_s"]))' >> "$COSTS"
    for k in 1 2 4 8; do
      "$LMP" generate "$f" -p "hello world" -n 32 --ignore-eos --json -t "$THREADS" --spec self:exit:0 --draft-p-min 0 \
          --draft-max "$k" |
        python3 -c 'import json, sys; s = json.load(sys.stdin)["spec"]; print("'"$t"'\t'"$k"'\t%f" % (1000 * s["verify_seconds"] / s["steps"]))' >> "$COSTS"
    done
  done
done

{
  echo "# Speculative decoding: lmpress generate --spec, plain decoding, llama-lookup, llama-speculative"
  echo
  echo "$(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs;" \
    "flags: $(grep -m1 flags /proc/cpuinfo | grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni|fma|f16c' | sort -u | tr '\n' ' ')"
  echo "threads $THREADS, greedy, $N tokens, EOS ignored, medians of $ROUNDS rounds alternating with lmpress plain decoding;"
  echo "targets Q8_0 GGUFs of ../shared's trained models (acceptance is real); prompt: a docs-calib.txt passage, then its start again."
  echo
  echo "| target | decoding | tokens/s | lmpress plain tokens/s | ratio to plain | acceptance |"
  echo "|---|---|---:|---:|---:|---:|"
  python3 - "$ROWS" <<'EOF'
import sys
for line in open(sys.argv[1]):
    t, label, sp, pl, ac = line.rstrip("\n").split("\t")
    sp, pl = float(sp), float(pl)
    acc = "-" if ac in ("-", "nan") else f"{100 * float(ac):.0f}%"
    print(f"| {t} | {label} | {sp:.0f} | {pl:.0f} | {sp / pl:.2f}x | {acc} |")
EOF
  echo
  echo "Costs on the tinyllama-1.1b shape (random weights, costs only): milliseconds of one plain decoding step and of"
  echo "one verification pass of 1 + k tokens (medians of $ROUNDS runs; the k drafts of a one-block self:exit draft)."
  echo
  echo "| type | plain step ms | pass k=1 | k=2 | k=4 | k=8 |"
  echo "|---|---:|---:|---:|---:|---:|"
  python3 - "$COSTS" <<'EOF'
import statistics, sys
from collections import defaultdict
v = defaultdict(list)
for line in open(sys.argv[1]):
    t, k, ms = line.split("\t")
    v[(t, int(k))].append(float(ms))
for t in dict.fromkeys(t for t, _ in v):
    base = statistics.median(v[(t, 0)])
    cells = [f"{statistics.median(v[(t, k)]):.1f} ({statistics.median(v[(t, k)]) / base:.2f}x)" for k in (1, 2, 4, 8)]
    print(f"| {t} | {base:.1f} | " + " | ".join(cells) + " |")
EOF
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
