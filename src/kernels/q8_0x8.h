// Q8_0 weights repacked at load into groups of 8 interleaved rows
// (DType::Q8_0_X8), the decoding layout of Q8_0 matrices, as Q4_0_X8 is for
// Q4_0: per 32-column block of 8 rows, the 8 scales, then 8 vectors of 32
// bytes where vector v holds weights 4v..4v+3 of each row. The kernel keeps
// one row per 32-bit lane: 4 broadcast activation bytes times one load give 8
// rows' partial dots, without the per-row horizontal sum and scalar scale
// conversions of the row-by-row kernel. Same 34 bytes per 32 weights, lossless.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/interleaved.h"
#include "kernels/blocks.h"

namespace lmpress {

struct BlockQ8_0x8 {
  uint16_t d[8];
  int8_t qs[8][32];  // qs[v][4·row + i] = weight 4v + i of `row`
};
static_assert(sizeof(BlockQ8_0x8) == 8 * sizeof(BlockQ8_0));

// Q8_0 rows [0, 8) of a `cols`-wide matrix into cols / 32 blocks, and back.
void pack_q8_0x8(const BlockQ8_0* rows, int64_t cols, BlockQ8_0x8* out);
void unpack_q8_0x8_row(const BlockQ8_0x8* group, int64_t cols, int r, BlockQ8_0* out);
void dequantize_q8_0x8_row(const BlockQ8_0x8* group, int64_t cols, int r, float* out);

// A Q8_0 matrix as Q8_0_X8 (rows must be a multiple of 8), and back.
Tensor repack_q8_0x8(const Tensor& q8_0);
std::vector<uint8_t> unpack_q8_0x8(const Tensor& x8);

// out[0..8) = the 8 rows of `group` · activations a (Q8_0 blocks).
void gemv_q8_0x8_ref(int64_t cols, const BlockQ8_0x8* group, const BlockQ8_0* a, float* out);
void gemv_q8_0x8(int64_t cols, const BlockQ8_0x8* group, const BlockQ8_0* a, float* out);
// Prompt batches: the same for 4 tokens at once (activations a + t·stride
// blocks, outputs out + t·out_stride), each weight load shared by the 4.
void gemm4_q8_0x8(int64_t cols, const BlockQ8_0x8* group, const BlockQ8_0* a, int64_t stride, float* out,
                  int64_t out_stride);
// The kernels above as cpu_isa() allows them, in the interleaved table's signature (kernels/interleaved.h).
X8Kernels q8_0x8_kernels();

}  // namespace lmpress
