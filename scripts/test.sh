#!/usr/bin/env bash
# Runs the whole test suite: the GoogleTest suite under ctest, real HTTP
# clients against lmpress serve, then every file reader under libFuzzer (tests/fuzz) for a bounded time, then the aarch64
# subset under qemu.
# Usage: bash scripts/setup.sh && bash scripts/test.sh   (FUZZ_SECONDS=N to change the fuzz time)
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build -j"$(nproc)"
# ctest runs tests side by side; idle OpenMP threads then sleep instead of
# spinning, or each test's threads would burn the cores the other one needs.
(cd build && OMP_WAIT_POLICY=PASSIVE ctest --output-on-failure -j"$(nproc)")

# The Python package, installed from the checkout into a fresh venv, and its tests.
bash scripts/test-python.sh

# Real HTTP clients (curl, Python, the OpenAI Node client) against lmpress serve.
bash scripts/test-serve-clients.sh
# A bounded soak of the server (scripts/soak-serve.sh runs 10,000 by default).
SOAK_REQUESTS=1000 bash scripts/soak-serve.sh

# FUZZ_SECONDS per weight-file parser, two thirds of it (rounded up: 0 would
# mean no limit) per tokenizer, config and task reader; 2.3 minutes by default.
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMPRESS_FUZZ=ON >/dev/null
  targets="gguf safetensors tokenizer_json sentencepiece hf_config tasks chat_template"
  cmake --build build-fuzz -j"$(nproc)" --target $(for t in $targets; do echo fuzz_$t; done)
  for t in $targets; do
    case $t in gguf|safetensors) secs=$FUZZ_SECONDS ;; *) secs=$(( (FUZZ_SECONDS * 2 + 2) / 3 )) ;; esac
    # Inputs that once crashed or leaked (tests/fuzz/crashes/<target>-*) replay first.
    crashes=$(ls tests/fuzz/crashes/$t-* 2>/dev/null || true)
    if [ -n "$crashes" ]; then
      build-fuzz/fuzz_$t $crashes 2>build-fuzz/fuzz_$t.log || { tail -50 build-fuzz/fuzz_$t.log; echo "fuzz_$t: a saved crash is back"; exit 1; }
    fi
    corpus="build-fuzz/corpus-$t"; mkdir -p "$corpus"
    cp tests/fuzz/seeds/$t/* "$corpus"/ 2>/dev/null || true
    echo "fuzz_$t: ${secs}s"
    build-fuzz/fuzz_$t -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 "$corpus" 2>build-fuzz/fuzz_$t.log \
      || { tail -50 build-fuzz/fuzz_$t.log; echo "fuzz_$t found a crash"; exit 1; }
    grep -E "^#[0-9]+.*DONE" build-fuzz/fuzz_$t.log | tail -1 || true
  done
fi
# 64-bit ARM: cross-built, the kernel tests, lmp-8m's logits and the CLI under
# qemu (scripts/test-aarch64.sh: a bounded subset). LMPRESS_AARCH64=0 skips it.
if [ "${LMPRESS_AARCH64:-1}" != 0 ]; then
  bash scripts/test-aarch64.sh
fi
echo "all tests passed"
