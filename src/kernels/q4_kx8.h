// Q4_K weights repacked at load into groups of 8 interleaved rows
// (DType::Q4_K_X8), the layout its int8 kernels read, as Q4_0_X8 is for Q4_0.
// Per 256-column block of 8 rows: the 8 rows' d and dmin, their 6-bit
// sub-block scales and mins decoded to bytes (sc[j][row], m[j][row]: one
// 8-byte load widens to a vector of 8 rows), then the nibbles in 4 chunks of
// 64 columns, each 8 vectors of 32 bytes where vector v holds, for each row,
// 4 consecutive weights of the chunk's first sub-block (low nibbles) and of
// its second (high nibbles). The kernel keeps one row per 32-bit lane. The
// decoded scales take 16 bytes more than the packed 12 of each row's block
// (148 instead of 144 per 256 weights); the packing is undone exactly on export.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/interleaved.h"
#include "kernels/qdot.h"
#include "kernels/blocks.h"

namespace lmpress {

struct BlockQ4_Kx8 {
  uint16_t d[8], dmin[8];
  uint8_t sc[8][8], m[8][8];  // [sub-block j][row]
  uint8_t qs[4][8][32];       // [chunk c][vector v][4·row + i]
};
static_assert(sizeof(BlockQ4_Kx8) == 8 * 148);

// Q4_K rows [0, 8) of a `cols`-wide matrix into cols / 256 blocks, and back.
void pack_q4_kx8(const BlockQ4_K* rows, int64_t cols, BlockQ4_Kx8* out);
void unpack_q4_kx8_row(const BlockQ4_Kx8* group, int64_t cols, int r, BlockQ4_K* out);
void dequantize_q4_kx8_row(const BlockQ4_Kx8* group, int64_t cols, int r, float* out);

// A Q4_K matrix as Q4_K_X8 (rows must be a multiple of 8), and back.
Tensor repack_q4_kx8(const Tensor& q4_k);
std::vector<uint8_t> unpack_q4_kx8(const Tensor& x8);

// out[0..8) = the 8 rows of `group` · activations a (Q8_K blocks).
void gemv_q4_kx8_ref(int64_t cols, const BlockQ4_Kx8* group, const BlockQ8_K* a, float* out);
void gemv_q4_kx8(int64_t cols, const BlockQ4_Kx8* group, const BlockQ8_K* a, float* out);
// Prompt batches: 4 tokens at once (activations a + t·stride blocks, outputs
// out + t·out_stride), each nibble load unpacked once for the 4.
void gemm4_q4_kx8(int64_t cols, const BlockQ4_Kx8* group, const BlockQ8_K* a, int64_t stride, float* out,
                  int64_t out_stride);
// The kernels above as cpu_isa() allows them, in the interleaved table's signature (kernels/interleaved.h).
X8Kernels q4_kx8_kernels();

}  // namespace lmpress
