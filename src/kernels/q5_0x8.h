// Q5_0 weights repacked at load into groups of 8 interleaved rows
// (DType::Q5_0_X8), as Q4_0_X8 is for Q4_0: the 8 scales, the low 4 bits in
// Q4_0_x8's byte order (byte 32v + 4·row + i: weight 4v + i in the low
// nibble, weight 4(v + 4) + i in the high one), and the fifth bits regrouped
// to match: byte 4·row + i of qh holds in bit v the fifth bit of weight
// 4v + i and in bit 4 + v that of weight 4(v + 4) + i, so one 32-byte load and
// a shift give the fifth bits of a whole nibble vector. Same bytes as Q5_0 (22
// per 32 weights), so lossless; small models' Q4_K_M files are mostly Q5_0
// (their widths are not multiples of 256).
//
// Q5_1 likewise (DType::Q5_1_X8): the 8 scales, the 8 minimums, then the same
// nibbles and fifth bits; the values are unsigned (w = d·q + m), so a dot is
// d·da·Σ q·a + m·da·Σ a, the second term from the activation block's Σ
// computed once per matmul. Small models' Q5_K_M files are mostly Q5_1.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/interleaved.h"
#include "kernels/blocks.h"

namespace lmpress {

struct BlockQ5_0x8 {
  uint16_t d[8];
  uint8_t qs[128];
  uint8_t qh[32];
};
static_assert(sizeof(BlockQ5_0x8) == 8 * sizeof(BlockQ5_0));

// Q5_0 rows [8·g, 8·g + 8) of a `cols`-wide matrix into cols / 32 blocks.
void pack_q5_0x8(const BlockQ5_0* rows, int64_t cols, BlockQ5_0x8* out);
// Row r (0..7) of a group as floats (what dequantizing its Q5_0 blocks gives).
void dequantize_q5_0x8_row(const BlockQ5_0x8* group, int64_t cols, int r, float* out);

// A Q5_0 matrix as Q5_0_X8 (rows must be a multiple of 8), and back.
Tensor repack_q5_0x8(const Tensor& q5_0);
std::vector<uint8_t> unpack_q5_0x8(const Tensor& x8);

// out[0..8) = the 8 rows of `group` · activations a (Q8_0 blocks); sums[b] =
// Σ of a[b].qs (the 5-bit values are used unsigned, value + 16).
void gemv_q5_0x8_ref(int64_t cols, const BlockQ5_0x8* group, const BlockQ8_0* a, const int32_t* sums, float* out);
void gemv_q5_0x8(int64_t cols, const BlockQ5_0x8* group, const BlockQ8_0* a, const int32_t* sums, float* out);
// Prompt batches: 4 tokens at once (activations a + t·stride blocks, sums +
// t·stride, outputs out + t·out_stride), each weight vector unpacked once.
void gemm4_q5_0x8(int64_t cols, const BlockQ5_0x8* group, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                  float* out, int64_t out_stride);
// The kernels above as cpu_isa() allows them, in the interleaved table's signature (kernels/interleaved.h).
X8Kernels q5_0x8_kernels();

struct BlockQ5_1x8 {
  uint16_t d[8];
  uint16_t m[8];
  uint8_t qs[128];
  uint8_t qh[32];
};
static_assert(sizeof(BlockQ5_1x8) == 8 * sizeof(BlockQ5_1));

void pack_q5_1x8(const BlockQ5_1* rows, int64_t cols, BlockQ5_1x8* out);
void dequantize_q5_1x8_row(const BlockQ5_1x8* group, int64_t cols, int r, float* out);
Tensor repack_q5_1x8(const Tensor& q5_1);
std::vector<uint8_t> unpack_q5_1x8(const Tensor& x8);
// As for Q5_0_X8; sums[b] = Σ of a[b].qs (the minimums' term).
void gemv_q5_1x8_ref(int64_t cols, const BlockQ5_1x8* group, const BlockQ8_0* a, const int32_t* sums, float* out);
void gemv_q5_1x8(int64_t cols, const BlockQ5_1x8* group, const BlockQ8_0* a, const int32_t* sums, float* out);
void gemm4_q5_1x8(int64_t cols, const BlockQ5_1x8* group, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                  float* out, int64_t out_stride);
X8Kernels q5_1x8_kernels();

}  // namespace lmpress
