#!/usr/bin/env bash
# The kernels for instruction sets this project's own machines lack (VNNI
# 4-token kernels in src/kernels/x8_vnni.cc, AVX-512 tiles of gemm_packed)
# checked and timed on a machine that has them but perhaps not lmpress's full
# build dependencies: builds bench/isa_check.cc with the kernel sources it
# needs (g++, libfmt and Highway) and runs it. Exit status 1 on a mismatch.
# Highway: from pkg-config when installed, else from $HWY_DIR (include/ and
# lib/), e.g. a copy of Debian's libhwy-dev carried to the machine:
#   mkdir -p .hwy/include .hwy/lib && cp -r /usr/include/hwy .hwy/include/ &&
#   cp -P /usr/lib/x86_64-linux-gnu/libhwy.so* .hwy/lib/
set -euo pipefail
cd "$(dirname "$0")/.."
K=src/kernels
SRCS="$K/q4_0x8.cc $K/q5_0x8.cc $K/q8_0x8.cc $K/q4_kx8.cc $K/x8_vnni.cc $K/qdot.cc $K/qdot_ref.cc $K/qdot_avx2.cc
  $K/qdot_avx2_kquants.cc $K/blocks.cc $K/bitmap.cc $K/bitmap_avx2.cc $K/q8_0_2of4x8.cc $K/sparse24.cc
  $K/sparse24_avx2.cc $K/gemm_packed.cc $K/gemm_microkernel.cc $K/to_f32.cc $K/interleaved.cc src/core/dtype.cc src/core/tensor.cc src/core/cpu_isa.cc"
OUT=${OUT:-$(mktemp -d)}
if pkg-config --exists libhwy 2>/dev/null; then
  HWY_FLAGS=$(pkg-config --cflags --libs libhwy)
else
  HWY_DIR=$(realpath "${HWY_DIR:-.hwy}")
  HWY_FLAGS="-I$HWY_DIR/include -L$HWY_DIR/lib -Wl,-rpath,$HWY_DIR/lib -lhwy"
fi
g++ -O2 -std=c++20 -fopenmp -Isrc bench/isa_check.cc $SRCS -lfmt $HWY_FLAGS -o "$OUT/isa_check"
"$OUT/isa_check"
