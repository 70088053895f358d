#include "quant/block_grid.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/int_blocks.h"
#include "quant/scale_search.h"
#include "quant/simple_quants.h"

namespace lmpress {

int nearest_grid_level(float scale, float offset, int n_levels, const int8_t* table, float x) {
  const float v = scale != 0 ? (x - offset) / scale : 0.0f;
  if (table) return ggml_search::best_index_int8(n_levels, table, v);
  if (scale == 0) return 0;
  return int(std::clamp<long>(std::lround(v), 0, n_levels - 1));
}

namespace {

template <typename B>
const B& as(const uint8_t* p) {
  return *reinterpret_cast<const B*>(p);
}
template <typename B>
B& as(uint8_t* p) {
  return *reinterpret_cast<B*>(p);
}

// One scale/offset per sub-block of `sub` elements.
void fill(BlockGrid& g, int first, int count, float scale, float offset) {
  for (int e = first; e < first + count; e++) {
    g.scale[e] = scale;
    g.offset[e] = offset;
  }
}

void pack_nibbles32(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 16; j++) qs[j] = uint8_t((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
}

uint32_t fifth_bits32(const uint8_t* L) {
  uint32_t qh = 0;
  for (int j = 0; j < 32; j++) qh |= uint32_t((L[j] >> 4) & 1) << j;
  return qh;
}

// Q2_K/Q3_K: 2-bit levels, four 32-element groups per byte column of 128.
void pack_2bit_k(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// 32-element blocks with n_levels levels: symmetric (level − n_levels/2)·d
// (Q4_0, Q5_0, Q8_0) or affine level·d + m (Q4_1, Q5_1).
template <typename B>
void grid32_symmetric(const uint8_t* p, int n_levels, BlockGrid& g) {
  const float d = f16_to_f32(as<B>(p).d);
  g.n = 32, g.n_levels = n_levels;
  fill(g, 0, 32, d, -float(n_levels / 2) * d);
}
template <typename B>
void grid32_affine(const uint8_t* p, int n_levels, BlockGrid& g) {
  const auto& b = as<B>(p);
  g.n = 32, g.n_levels = n_levels;
  fill(g, 0, 32, f16_to_f32(b.d), f16_to_f32(b.m));
}

// Q5_0/Q5_1: low nibbles in qs, the fifth bits in the 32-bit qh.
template <typename B>
void pack_q5(const uint8_t* L, uint8_t* p) {
  pack_nibbles32(L, as<B>(p).qs);
  const uint32_t qh = fifth_bits32(L);
  std::memcpy(as<B>(p).qh, &qh, 4);
}

}  // namespace

bool has_block_grid(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
    case DType::IQ4_NL: case DType::IQ4_XS: case DType::TQ1_0: case DType::TQ2_0: case DType::MXFP4:
      return true;
    default:
      return false;
  }
}

void block_grid(DType t, const uint8_t* p, BlockGrid& g) {
  g.table = nullptr;
  switch (t) {
    case DType::Q4_0: grid32_symmetric<BlockQ4_0>(p, 16, g); return;
    case DType::Q5_0: grid32_symmetric<BlockQ5_0>(p, 32, g); return;
    case DType::Q8_0: grid32_symmetric<BlockQ8_0>(p, 256, g); return;
    case DType::Q4_1: grid32_affine<BlockQ4_1>(p, 16, g); return;
    case DType::Q5_1: grid32_affine<BlockQ5_1>(p, 32, g); return;
    case DType::IQ4_NL: {
      g.n = 32, g.n_levels = 16, g.table = kIQ4NLValues;
      fill(g, 0, 32, f16_to_f32(as<BlockIQ4_NL>(p).d), 0);
      return;
    }
    case DType::IQ4_XS: {
      const auto& b = as<BlockIQ4_XS>(p);
      const float d = f16_to_f32(b.d);
      g.n = QK_K, g.n_levels = 16, g.table = kIQ4NLValues;
      for (int j = 0; j < 8; j++) {
        const int ls = ((b.scales_l[j / 2] >> 4 * (j % 2)) & 0xf) | (((b.scales_h >> 2 * j) & 3) << 4);
        fill(g, 32 * j, 32, d * float(ls - 32), 0);
      }
      return;
    }
    case DType::TQ1_0:
    case DType::TQ2_0: {
      const float d = f16_to_f32(t == DType::TQ1_0 ? as<BlockTQ1_0>(p).d : as<BlockTQ2_0>(p).d);
      g.n = QK_K, g.n_levels = 3;
      fill(g, 0, QK_K, d, -d);
      return;
    }
    case DType::MXFP4: {
      g.n = 32, g.n_levels = 15, g.table = kFp4Sorted;
      fill(g, 0, 32, e8m0_to_f32_half(as<BlockMXFP4>(p).e), 0);
      return;
    }
    case DType::Q2_K: {
      const auto& b = as<BlockQ2_K>(p);
      const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
      g.n = QK_K, g.n_levels = 4;
      for (int j = 0; j < 16; j++) fill(g, 16 * j, 16, d * float(b.scales[j] & 0xF), -dmin * float(b.scales[j] >> 4));
      return;
    }
    case DType::Q3_K: {
      const auto& b = as<BlockQ3_K>(p);
      const float d = f16_to_f32(b.d);
      g.n = QK_K, g.n_levels = 8;
      for (int j = 0; j < 16; j++) {
        const float s = d * float(q3_k_scale(j, b.scales));
        fill(g, 16 * j, 16, s, -4 * s);
      }
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = t == DType::Q5_K;
      const uint8_t* scales = five ? as<BlockQ5_K>(p).scales : as<BlockQ4_K>(p).scales;
      const float d = f16_to_f32(five ? as<BlockQ5_K>(p).d : as<BlockQ4_K>(p).d);
      const float dmin = f16_to_f32(five ? as<BlockQ5_K>(p).dmin : as<BlockQ4_K>(p).dmin);
      g.n = QK_K, g.n_levels = five ? 32 : 16;
      for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        scale_min_k4(j, scales, sc, m);
        fill(g, 32 * j, 32, d * sc, -dmin * m);
      }
      return;
    }
    case DType::Q6_K: {
      const auto& b = as<BlockQ6_K>(p);
      const float d = f16_to_f32(b.d);
      g.n = QK_K, g.n_levels = 64;
      for (int j = 0; j < 16; j++) {
        const float s = d * float(b.scales[j]);
        fill(g, 16 * j, 16, s, -32 * s);
      }
      return;
    }
    default:
      fail("{} has no quantization grid", dtype_name(t));
  }
}

void pack_levels(DType t, const uint8_t* L, uint8_t* p) {
  switch (t) {
    case DType::Q4_0: pack_nibbles32(L, as<BlockQ4_0>(p).qs); return;
    case DType::Q4_1: pack_nibbles32(L, as<BlockQ4_1>(p).qs); return;
    case DType::IQ4_NL: pack_nibbles32(L, as<BlockIQ4_NL>(p).qs); return;
    case DType::IQ4_XS:
      for (int j = 0; j < 8; j++) pack_nibbles32(L + 32 * j, as<BlockIQ4_XS>(p).qs + 16 * j);
      return;
    case DType::TQ1_0: pack_tq1_0(L, as<BlockTQ1_0>(p)); return;
    case DType::TQ2_0: pack_tq2_0(L, as<BlockTQ2_0>(p)); return;
    case DType::MXFP4: {
      uint8_t nib[32];
      for (int j = 0; j < 32; j++) nib[j] = kFp4SortedNibble[L[j]];
      pack_nibbles32(nib, as<BlockMXFP4>(p).qs);
      return;
    }
    case DType::Q5_0: pack_q5<BlockQ5_0>(L, p); return;
    case DType::Q5_1: pack_q5<BlockQ5_1>(L, p); return;
    case DType::Q8_0:
      for (int j = 0; j < 32; j++) as<BlockQ8_0>(p).qs[j] = int8_t(int(L[j]) - 128);
      return;
    case DType::Q2_K: pack_2bit_k(L, as<BlockQ2_K>(p).qs); return;
    case DType::Q3_K: {
      // Bit 2 of level e goes to bit e / 32 of hmask[e % 32].
      auto& b = as<BlockQ3_K>(p);
      std::memset(b.hmask, 0, sizeof b.hmask);
      uint8_t low[QK_K];
      for (int e = 0; e < QK_K; e++) {
        if (L[e] > 3) b.hmask[e % 32] = uint8_t(b.hmask[e % 32] | (1 << (e / 32)));
        low[e] = L[e] & 3;
      }
      pack_2bit_k(low, b.qs);
      return;
    }
    case DType::Q4_K: {
      uint8_t* q = as<BlockQ4_K>(p).qs;
      for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
      return;
    }
    case DType::Q5_K: {
      auto& b = as<BlockQ5_K>(p);
      std::memset(b.qh, 0, sizeof b.qh);
      uint8_t* ql = b.qs;
      for (int n = 0, shift = 0; n < QK_K; n += 64, ql += 32, shift += 2)
        for (int j = 0; j < 32; ++j) {
          const int l1 = L[n + j], l2 = L[n + j + 32];
          b.qh[j] = uint8_t(b.qh[j] | ((l1 >> 4) << shift) | ((l2 >> 4) << (shift + 1)));
          ql[j] = uint8_t((l1 & 0xF) | ((l2 & 0xF) << 4));
        }
      return;
    }
    case DType::Q6_K: {
      auto& b = as<BlockQ6_K>(p);
      uint8_t* ql = b.ql;
      uint8_t* qh = b.qh;
      for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; ++l) {
          ql[l] = uint8_t((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
          ql[l + 32] = uint8_t((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
          qh[l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                          ((L[j + l + 96] >> 4) << 6));
        }
      return;
    }
    default:
      fail("{} has no level packing", dtype_name(t));
  }
}

}  // namespace lmpress
