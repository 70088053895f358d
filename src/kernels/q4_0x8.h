// Q4_0 weights repacked at load into groups of 8 interleaved rows, for
// decoding (llama.cpp's block_q4_0x8 idea, with its own byte order): per
// 32-column block of 8 rows, the 8 scales, then 128 bytes of nibbles laid out
// so that one 32-byte load holds 4 consecutive weights of each of the 8 rows.
// The matrix-vector kernel then keeps one row per 32-bit lane: a broadcast of
// 4 activation bytes times that load gives 8 rows' partial dots at once, the
// 8 scales convert with one instruction, and the weights stream from one
// contiguous buffer. Same bytes as Q4_0 (18 per 32 weights), so lossless.
#pragma once
#include <cstdint>
#include <vector>

#include "core/fp16.h"
#include "core/tensor.h"
#include "kernels/interleaved.h"
#include "kernels/blocks.h"

namespace lmpress {

// Byte q of vector v (v = 0..3, q = 4·row + i) holds weight 4v + i of `row`
// in its low nibble and weight 4(v + 4) + i in its high nibble.
struct BlockQ4_0x8 {
  uint16_t d[8];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_0x8) == 8 * sizeof(BlockQ4_0));

// Q4_0 rows [8·g, 8·g + 8) of a `cols`-wide matrix into blocks (cols / 32 of them).
void pack_q4_0x8(const BlockQ4_0* rows, int64_t cols, BlockQ4_0x8* out);
// Row r (0..7) of a group as floats (what dequantizing its Q4_0 blocks gives).
void dequantize_q4_0x8_row(const BlockQ4_0x8* group, int64_t cols, int r, float* out);
// The 8 rows' integer dots of one block of a group (Q4_0_X8's nibble order:
// BlockQ4_0x8 or BlockQ4_1x8) with an activation block, each stored nibble
// read as level(nibble) (the scalar references' core).
template <class Group, class Level>
void nibble_x8_dots(const Group& g, const BlockQ8_0& a, Level level, int32_t dot[8]) {
  for (int r = 0; r < 8; r++) dot[r] = 0;
  for (int v = 0; v < 4; v++)
    for (int r = 0; r < 8; r++)
      for (int i = 0; i < 4; i++) {
        const uint8_t q = g.qs[32 * v + 4 * r + i];
        dot[r] += int32_t(level(q & 0x0F)) * a.qs[4 * v + i] + int32_t(level(q >> 4)) * a.qs[4 * (v + 4) + i];
      }
}
// Row r of a group with each stored nibble read as level(nibble), times its block's scale (plus its minimum
// for a group that has them: d·q + m, as ggml dequantizes Q4_1).
template <class Group, class Level>
void dequantize_nibble_x8_row(const Group* group, int64_t cols, int r, float* out, Level level) {
  for (int64_t b = 0; b < cols / 32; b++, out += 32) {
    const Group& g = group[b];
    const float d = f16_to_f32(g.d[r]);
    const auto value = [&](int q) {
      if constexpr (kHasMinimums<Group>) return float(level(q)) * d + f16_to_f32(g.m[r]);
      else return float(level(q)) * d;
    };
    for (int v = 0; v < 4; v++)
      for (int i = 0; i < 4; i++) {
        const uint8_t q = g.qs[32 * v + 4 * r + i];
        out[4 * v + i] = value(q & 0x0F);
        out[4 * (v + 4) + i] = value(q >> 4);
      }
  }
}

// A Q4_0 matrix as Q4_0_X8 (rows must be a multiple of 8), and back.
Tensor repack_q4_0x8(const Tensor& q4_0);
std::vector<uint8_t> unpack_q4_0x8(const Tensor& x8);
// Row r (0..7) of a group back to plain Q4_0 blocks.
void unpack_q4_0x8_row(const BlockQ4_0x8* group, int64_t cols, int r, BlockQ4_0* out);

// out[0..8) = the 8 rows of `group` · activations a (Q8_0 blocks); sums[b] =
// Σ of a[b].qs (the nibbles are stored unsigned, value + 8).
void gemv_q4_0x8_ref(int64_t cols, const BlockQ4_0x8* group, const BlockQ8_0* a, const int32_t* sums, float* out);
void gemv_q4_0x8(int64_t cols, const BlockQ4_0x8* group, const BlockQ8_0* a, const int32_t* sums, float* out);
// Prompt batches: the same for 4 tokens at once (activations a + t·stride
// blocks, sums + t·stride, outputs out + t·out_stride), unpacking each nibble
// load once for all 4.
void gemm4_q4_0x8(int64_t cols, const BlockQ4_0x8* group, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                  float* out, int64_t out_stride);
// The kernels above as cpu_isa() allows them, in the interleaved table's signature (kernels/interleaved.h).
X8Kernels q4_0x8_kernels();

// Q4_1 likewise (DType::Q4_1_X8): the 8 scales, the 8 minimums, then the
// nibbles in Q4_0_X8's order; the values are unsigned (w = d·q + m), so a dot
// is d·da·Σ q·a + m·da·Σ a, the second term from the activation block's Σ.
struct BlockQ4_1x8 {
  uint16_t d[8];
  uint16_t m[8];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_1x8) == 8 * sizeof(BlockQ4_1));

void pack_q4_1x8(const BlockQ4_1* rows, int64_t cols, BlockQ4_1x8* out);
void dequantize_q4_1x8_row(const BlockQ4_1x8* group, int64_t cols, int r, float* out);
Tensor repack_q4_1x8(const Tensor& q4_1);
std::vector<uint8_t> unpack_q4_1x8(const Tensor& x8);
// As for Q4_0_X8; sums[b] = Σ of a[b].qs (the minimums' term).
void gemv_q4_1x8_ref(int64_t cols, const BlockQ4_1x8* group, const BlockQ8_0* a, const int32_t* sums, float* out);
void gemv_q4_1x8(int64_t cols, const BlockQ4_1x8* group, const BlockQ8_0* a, const int32_t* sums, float* out);
void gemm4_q4_1x8(int64_t cols, const BlockQ4_1x8* group, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                  float* out, int64_t out_stride);
X8Kernels q4_1x8_kernels();

}  // namespace lmpress
