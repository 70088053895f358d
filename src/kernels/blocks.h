// ggml's block-quantized formats, byte-identical to ggml-common.h, and their
// scalar reference dequantizers. A row of n elements is n / block_elems
// consecutive blocks.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace lmpress {

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK_K = 256, QK4_NL = 32;

#pragma pack(push, 1)
struct BlockQ4_0 { uint16_t d; uint8_t qs[QK4_0 / 2]; };
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[QK4_1 / 2]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; };
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[QK8_0]; };
struct BlockQ2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; };
struct BlockQ3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; };
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; };
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
struct BlockQ6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; };
struct BlockIQ4_NL { uint16_t d; uint8_t qs[QK4_NL / 2]; };
struct BlockIQ4_XS { uint16_t d, scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; };
struct BlockIQ3_XXS { uint16_t d; uint8_t qs[3 * QK_K / 8]; };
struct BlockIQ3_S { uint16_t d; uint8_t qs[QK_K / 4]; uint8_t qh[QK_K / 32]; uint8_t signs[QK_K / 8]; uint8_t scales[QK_K / 64]; };
struct BlockIQ2_XXS { uint16_t d; uint16_t qs[QK_K / 8]; };
struct BlockIQ2_XS { uint16_t d; uint16_t qs[QK_K / 8]; uint8_t scales[QK_K / 32]; };
struct BlockIQ2_S { uint16_t d; uint8_t qs[QK_K / 4]; uint8_t qh[QK_K / 32]; uint8_t scales[QK_K / 32]; };
struct BlockIQ1_S { uint16_t d; uint8_t qs[QK_K / 8]; uint16_t qh[QK_K / 32]; };
struct BlockIQ1_M { uint8_t qs[QK_K / 8]; uint8_t qh[QK_K / 16]; uint8_t scales[QK_K / 32]; };
struct BlockTQ1_0 { uint8_t qs[(QK_K - 4 * QK_K / 64) / 5]; uint8_t qh[QK_K / 64]; uint16_t d; };
struct BlockTQ2_0 { uint8_t qs[QK_K / 4]; uint16_t d; };
struct BlockMXFP4 { uint8_t e; uint8_t qs[16]; };  // e: E8M0 shared exponent
struct BlockLMP2 { uint16_t d; uint16_t qs[QK_K / 8]; };  // lmpress's own (kernels/lmp2.h): 32 16-bit codes
#pragma pack(pop)

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136 && sizeof(BlockIQ3_XXS) == 98 && sizeof(BlockIQ3_S) == 110);
static_assert(sizeof(BlockIQ2_XXS) == 66 && sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82);
static_assert(sizeof(BlockIQ1_S) == 50 && sizeof(BlockIQ1_M) == 56 && sizeof(BlockTQ1_0) == 54 && sizeof(BlockTQ2_0) == 66);
static_assert(sizeof(BlockMXFP4) == 17 && sizeof(BlockLMP2) == 66);

// Round to nearest with ggml's float-to-int trick (activation quantizers and
// the scale searches round the same way, so their bytes match ggml's).
inline int nearest_int(float v) {
  float val = v + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}

// The 16 non-uniform levels of IQ4_NL.
extern const int8_t kIQ4NLValues[16];

// Scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K/Q5_K:
// 6 bits each, the high bits of j >= 4 stored in the top bits of bytes 0..7.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Signed scale of sub-block j (0..15) from the 12 packed bytes of Q3_K: low
// nibbles in bytes 0..7, high 2 bits in bytes 8..11, offset by 32.
inline int q3_k_scale(int j, const uint8_t* s) {
  const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// The 256 signed values of a Q6_K block (4 low bits in ql, 2 high in qh, − 32)
// and of a Q3_K block (2 low bits per 128 values in bit pairs of 32 bytes, the
// third in hmask, cleared meaning −4), before their group scales.
void q6_k_values(const BlockQ6_K& b, int8_t* q);
void q3_k_values(const BlockQ3_K& b, int8_t* q);

// Dequantizes n elements (a multiple of the block size) of a block type.
// Returns false for a type that has no dequantizer.
bool dequantize_row(DType t, const uint8_t* blocks, int64_t n, float* out);
// Row r of a `cols`-wide matrix stored in a row-interleaved type
// (is_row_interleaved: Q4_0_X8, Q8_0_X8, Q8_0_2OF4_X8, Q4_K_X8) starting at `data`. Returns
// false for other types.
bool dequantize_interleaved_row(DType t, const uint8_t* data, int64_t cols, int64_t r, float* out);

}  // namespace lmpress
