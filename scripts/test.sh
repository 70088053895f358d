#!/usr/bin/env bash
# Runs the whole test suite: the GoogleTest suite under ctest, then the GGUF
# and safetensors parsers under libFuzzer for a bounded time.
# Usage: bash scripts/setup.sh && bash scripts/test.sh   (FUZZ_SECONDS=N to change the fuzz time)
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build -j"$(nproc)"
# ctest runs tests side by side; idle OpenMP threads then sleep instead of
# spinning, or each test's threads would burn the cores the other one needs.
(cd build && OMP_WAIT_POLICY=PASSIVE ctest --output-on-failure -j"$(nproc)")

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMPRESS_FUZZ=ON >/dev/null
  cmake --build build-fuzz -j"$(nproc)" --target fuzz_gguf fuzz_safetensors
  for t in gguf safetensors; do
    corpus="build-fuzz/corpus-$t"; mkdir -p "$corpus"
    cp tests/fuzz/seeds/$t/* "$corpus"/ 2>/dev/null || true
    echo "fuzz_$t: ${FUZZ_SECONDS}s"
    build-fuzz/fuzz_$t -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -max_len=65536 "$corpus" 2>build-fuzz/fuzz_$t.log \
      || { tail -50 build-fuzz/fuzz_$t.log; echo "fuzz_$t found a crash"; exit 1; }
    grep -E "^#[0-9]+.*DONE" build-fuzz/fuzz_$t.log | tail -1 || true
  done
fi
echo "all tests passed"
