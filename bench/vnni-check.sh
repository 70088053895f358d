#!/usr/bin/env bash
# The VNNI 4-token kernels (src/kernels/x8_vnni.cc: AVX-VNNI, AVX512-VNNI)
# checked and timed on a machine that has one but perhaps not lmpress's full
# build dependencies (only g++ and libfmt): builds bench/vnni_check.cc with the
# kernel sources it needs, checks gemm4 on each VNNI encoding the CPU has
# against the AVX2 and scalar gemv, and prints one-thread GOP/s per target.
# Exit status 1 on a mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
K=src/kernels
SRCS="$K/q4_0x8.cc $K/q8_0x8.cc $K/q4_kx8.cc $K/x8_vnni.cc $K/qdot.cc $K/qdot_ref.cc $K/qdot_avx2.cc
  $K/qdot_avx2_kquants.cc src/quant/blocks.cc src/core/dtype.cc src/sparse/bitmap.cc src/sparse/bitmap_avx2.cc
  src/sparse/q8_0_2of4x8.cc src/sparse/sparse24.cc src/sparse/sparse24_avx2.cc"
OUT=${OUT:-$(mktemp -d)}
g++ -O2 -std=c++20 -fopenmp -Isrc bench/vnni_check.cc $SRCS -lfmt -o "$OUT/vnni_check"
"$OUT/vnni_check"
