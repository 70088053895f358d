#!/usr/bin/env bash
# Random-weight GGUFs that llama.cpp itself writes (its tests/test-llama-archs.cpp -o DIR: llama_model_saver, each
# architecture dense and as a mixture where llama.cpp has one) run in lmpress with llama.cpp's logits: the same 24
# token ids through bench/tools/llama_logits.cpp (libllama) and bench/tools/lmpress_logits.cpp (liblmpress, f32 KV
# cache), compared per file as the largest logit difference relative to the largest logit, and the top token of every
# position. The files' dummy "test" tokenizer is renamed "llama" for lmpress (bench/tools/gguf_edit_keys.py): ids go in.
# Builds test-llama-archs in the llama.cpp peer's build directory (its tests switched on) the first time.
# Usage: bench/llama-archs-logits.sh   Env: ARCHS (regex of llama.cpp architecture names), OUT, WORK
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHS=${ARCHS:-"^(llama|qwen2|qwen3|qwen2moe|qwen3moe|olmoe|deepseek|gemma2|gemma3|phi3|olmo2|granite|smollm3|gpt-oss)$"}
OUT=${OUT:-$PWD/bench/results/llama-archs-logits.md}
W=${WORK:-$(mktemp -d)}
SRC=$(bash ../shared/tools/build-llama-cpp.sh --src)
BIN=$SRC/build/bin
if [ ! -x "$BIN/test-llama-archs" ]; then
  cmake -S "$SRC" -B "$SRC/build" -DLLAMA_BUILD_TESTS=ON > /dev/null
  cmake --build "$SRC/build" --target test-llama-archs -j"$(nproc)" > /dev/null
fi
[ -f build/liblmpress.so ] || cmake --build build --target lmpress_shared > /dev/null
mkdir -p "$W/models" "$W/ids"
g++ -O2 -std=c++17 bench/tools/llama_logits.cpp -I"$SRC/include" -I"$SRC/ggml/include" -L"$BIN" -lllama \
  -Wl,-rpath,"$BIN" -o "$W/llama_logits"
g++ -O2 -std=c++17 bench/tools/lmpress_logits.cpp -Iinclude -Lbuild -llmpress -Wl,-rpath,"$PWD/build" -o "$W/lmpress_logits"
"$BIN/test-llama-archs" -a "$ARCHS" -s 1 -o "$W/models" > "$W/save.log" 2>&1
# 24 fixed ids below the files' vocabulary of 128.
TOKENS=$(python3 -c "import random; r = random.Random(7); print(' '.join(str(r.randrange(128)) for _ in range(24)))")
# The files hold every optional tensor llama.cpp's loader knows: per-tensor output scales (`.scale`, NVFP4 and FP8
# checkpoints'), input scales, biases on every projection and on the output, a classifier head. lmpress refuses
# the ones it does not apply, so both programs run the files without them (llama.cpp skips absent optional
# tensors): the architectures' own arithmetic is compared. The dummy tokenizer ("test": one token per id) is read
# by lmpress as a SentencePiece vocabulary.
OPTIONAL='(\.scale|\.input_scale|ffn_(gate|up)(_shexp)?\.bias|ffn_down_shexp\.bias|^output\.bias|^cls\.)'
strip() { python3 bench/tools/gguf_edit_keys.py "$1" "$2" tokenizer.ggml.model=llama --drop-tensors "$OPTIONAL"; }
plain() { python3 bench/tools/gguf_edit_keys.py "$1" "$2" --drop-tensors "$OPTIONAL"; }
rows=""
for f in "$W"/models/*.gguf; do
  name=$(basename "$f" .gguf)
  strip "$f" "$W/ids/$name.gguf"
  plain "$f" "$W/models/$name.plain"
  # shellcheck disable=SC2086
  if ! "$W/llama_logits" "$W/models/$name.plain" "$W/$name.llama.f32" $TOKENS > "$W/$name.llama.log" 2>&1; then
    rows+="| $name | llama.cpp fails: $(grep -m1 -i error "$W/$name.llama.log" | cut -c1-80) | | |"$'\n'; continue
  fi
  # shellcheck disable=SC2086
  if ! "$W/lmpress_logits" "$W/ids/$name.gguf" "$W/$name.lmpress.f32" $TOKENS > "$W/$name.lmpress.log" 2>&1; then
    rows+="| $name | lmpress refuses: $(grep -m1 error "$W/$name.lmpress.log" | sed "s|$W/ids/||" | cut -c1-160) | | |"$'\n'; continue
  fi
  rows+=$(/usr/bin/python3 - "$W/$name.llama.f32" "$W/$name.lmpress.f32" "$name" <<'EOF'
import sys, numpy as np
a, b = np.fromfile(sys.argv[1], np.float32), np.fromfile(sys.argv[2], np.float32)
if a.size != b.size:
    print("| %s | logits of different sizes: %d vs %d | | |" % (sys.argv[3], a.size, b.size)); sys.exit()
a, b = a.reshape(24, -1), b.reshape(24, -1)
rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
top = int((a.argmax(1) == b.argmax(1)).sum())
print("| %s | %.2e | %.3f | %d of 24 |" % (sys.argv[3], rel, float(np.abs(a).max()), top))
EOF
)$'\n'
done
{
  echo "# llama.cpp's own random-weight GGUFs, run by lmpress"
  echo
  echo "\`bench/llama-archs-logits.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), lmpress $(git rev-parse --short HEAD), llama.cpp $(git -C "$SRC" rev-parse --short HEAD)."
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs."
  echo
  echo "Files: llama.cpp's \`test-llama-archs -a '$ARCHS' -o DIR\` (weights drawn with stdev 0.1, a vocabulary of"
  echo "128, dense and mixture variants). Both programs evaluate the same 24 token ids in one batch; \"largest"
  echo "difference\" is max |lmpress − llama.cpp| over every logit divided by llama.cpp's largest |logit|."
  echo "Both sides with f32 KV caches and llama.cpp's flash attention off (its CPU kernel rounds through f16). The files"
  echo "hold every optional tensor llama.cpp's loader knows (per-tensor output scales, input scales, biases on every"
  echo "projection and the output, a classifier head); lmpress refuses the ones it does not apply, by name, so both"
  echo "programs run copies without them. Gemma's residual difference is ggml's GELU, which reads an f16 table."
  echo
  echo "| file | largest difference (relative) | largest logit | same top token |"
  echo "|---|---:|---:|---:|"
  printf '%s' "$rows"
} > "$OUT"
cat "$OUT"
