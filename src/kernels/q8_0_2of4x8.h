// 2:4-sparse Q8_0 weights in groups of 8 interleaved rows (DType::Q8_0_2OF4_X8),
// the decode layout for `prune --nm 2:4 --quantize q8_0` models whose matrices
// have a multiple of 8 rows. Same 22 bytes per 32 weights as Q8_0_2OF4 (35%
// fewer than Q8_0), but laid out like Q4_0_X8 so that the kernel keeps one row
// per 32-bit lane: instead of expanding each row's kept values to 32 dense
// weights (four table lookups per block), it gathers the activations each
// kept value needs with one vpshufb whose control comes from the stored
// 2-bit positions by a shift and a mask. Lossless; export writes the Q8_0
// blocks back bit for bit.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/interleaved.h"
#include "kernels/blocks.h"

namespace lmpress {

// One 32-column block of 8 rows. Vector j (0..3) covers columns 8j..8j+7:
// byte 4r + k of v[j] is row r's kept value k, where k = 0, 1 are the two
// kept in group 2j (columns 8j..8j+3) and k = 2, 3 the two in group 2j + 1.
// The value's position in its group (0..3) is the bit pair q of byte b of
// pos[j], for byte i = 8q + b of v[j]: a 64-bit broadcast shifted right by
// (0, 2, 4, 6) per 64-bit lane and masked with 3 gives all 32 positions.
struct BlockQ8_0_2of4x8 {
  uint16_t d[8];    // the rows' f16 scales
  int8_t v[4][32];  // kept values
  uint64_t pos[4];  // positions
};
static_assert(sizeof(BlockQ8_0_2of4x8) == 8 * 22, "Q8_0_2OF4_X8 block layout");

// Q8_0 rows [0, 8) of a `cols`-wide matrix (cols / 32 blocks each) into
// cols / 32 blocks; false if some group of 4 has more than 2 nonzero quants.
bool pack_q8_0_2of4x8(const BlockQ8_0* rows, int64_t cols, BlockQ8_0_2of4x8* out);
// Row r (0..7) of a group as Q8_0 blocks, or as floats.
void unpack_q8_0_2of4x8_row(const BlockQ8_0_2of4x8* group, int64_t cols, int r, BlockQ8_0* out);
void dequantize_q8_0_2of4x8_row(const BlockQ8_0_2of4x8* group, int64_t cols, int r, float* out);

// A 2:4 Q8_0 matrix (rows a multiple of 8, checked by the caller with
// is_2of4_q8_0) as Q8_0_2OF4_X8, and back to Q8_0 bytes.
Tensor repack_q8_0_2of4x8(const Tensor& q8_0);
std::vector<uint8_t> unpack_q8_0_2of4x8(const Tensor& x8);

// out[0..8) = the 8 rows of `group` · activations a (Q8_0 blocks).
void gemv_q8_0_2of4x8_ref(int64_t cols, const BlockQ8_0_2of4x8* group, const BlockQ8_0* a, float* out);
void gemv_q8_0_2of4x8(int64_t cols, const BlockQ8_0_2of4x8* group, const BlockQ8_0* a, float* out);
// The kernels above as cpu_isa() allows them, in the interleaved table's signature (kernels/interleaved.h).
X8Kernels q8_0_2of4x8_kernels();

}  // namespace lmpress
