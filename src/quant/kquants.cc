// Quantizers for ggml's super-block formats (Q2_K..Q6_K), IQ4_NL and IQ4_XS, with and
// without importance weights, following ggml-quants.c step by step so that
// the bytes match llama-quantize's.
#include "quant/kquants.h"

#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/block_grid.h"
#include "quant/scale_search.h"

namespace lmpress {
namespace {

using namespace ggml_search;

// Q2_K: d = dmin-scaled 4-bit sub-block scales and mins; levels 0..3.
void requantize_q2_k(const float* x, BlockQ2_K& y, uint8_t* L) {
  const float dall = f16_to_f32(y.d), mall = f16_to_f32(y.dmin);
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = dall * (y.scales[j] & 0xF);
    if (!d) continue;
    const float dm = mall * (y.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = uint8_t(std::max(0, std::min(3, l)));
    }
  }
  pack_levels(DType::Q2_K, L, reinterpret_cast<uint8_t*>(&y));
}

void quantize_q2_k(const float* x, int64_t nb, BlockQ2_K* y, const float* qw) {
  uint8_t L[QK_K], Laux[16], Ls[16], Lm[16];
  float weights[16], mins[16], scales[16], sw[16];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    if (!qw) {
      float max_scale = 0, max_min = 0;
      for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
        scales[j] = make_qkx_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
        max_scale = std::max(max_scale, scales[j]);
        max_min = std::max(max_min, mins[j]);
      }
      if (max_scale > 0) {
        const float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; ++j) y[i].scales[j] = uint8_t(nearest_int(iscale * scales[j]));
        y[i].d = f32_to_f16(max_scale / 15.f);
      } else {
        for (int j = 0; j < 16; ++j) y[i].scales[j] = 0;
        y[i].d = f32_to_f16(0.f);
      }
      if (max_min > 0) {
        const float iscale = 15.f / max_min;
        for (int j = 0; j < 16; ++j) y[i].scales[j] = uint8_t(y[i].scales[j] | (nearest_int(iscale * mins[j]) << 4));
        y[i].dmin = f32_to_f16(max_min / 15.f);
      } else {
        y[i].dmin = f32_to_f16(0.f);
      }
    } else {
      const float* w = qw + QK_K * i;
      float sumx2 = 0;
      for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
      const float sigma2 = sumx2 / QK_K;
      for (int j = 0; j < 16; ++j) {
        sw[j] = 0;
        importance_weights(w + 16 * j, x + 16 * j, 16, sigma2, weights);
        for (int l = 0; l < 16; ++l) sw[j] += weights[l];
        scales[j] = make_qkx_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
      }
      y[i].d = f32_to_f16(make_qp_quants(16, 15, scales, Ls, sw));
      y[i].dmin = f32_to_f16(make_qp_quants(16, 15, mins, Lm, sw));
      for (int j = 0; j < 16; ++j) y[i].scales[j] = uint8_t(Ls[j] | (Lm[j] << 4));
    }
    requantize_q2_k(x, y[i], L);
  }
}

// Q3_K's 16 six-bit scales: low nibbles in bytes 0..7, high 2 bits in 8..11.
void pack_q3_scale(int j, int l, uint8_t* s) {
  if (j < 8) s[j] = uint8_t(l & 0xF);
  else s[j - 8] = uint8_t(s[j - 8] | ((l & 0xF) << 4));
  l >>= 4;
  s[j % 4 + 8] = uint8_t(s[j % 4 + 8] | (l << (2 * (j / 4))));
}

void quantize_q3_k(const float* x, int64_t nb, BlockQ3_K* y, const float* qw) {
  int8_t L[QK_K], Ls[16];
  float scales[16], weight[16], sw[16];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    std::memset(y[i].scales, 0, 12);
    if (!qw) {
      for (int j = 0; j < 16; ++j) scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
      const float max_scale = signed_absmax(scales, 16);
      if (max_scale) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; ++j) {
          int8_t l = int8_t(nearest_int(iscale * scales[j]));
          l = int8_t(std::max<int>(-32, std::min<int>(31, l)) + 32);
          pack_q3_scale(j, l, y[i].scales);
        }
        y[i].d = f32_to_f16(1 / iscale);
      } else {
        y[i].d = f32_to_f16(0.f);
      }
    } else {
      const float* w = qw + QK_K * i;
      float sumx2 = 0;
      for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
      const float sigma2 = 2 * sumx2 / QK_K;
      for (int j = 0; j < 16; ++j) {
        importance_weights(w + 16 * j, x + 16 * j, 16, sigma2, weight);
        float sumw = 0;
        for (int l = 0; l < 16; ++l) sumw += weight[l];
        sw[j] = sumw;
        scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
      }
      const float d_block = make_qx_quants(16, 32, scales, Ls, 1, sw);
      for (int j = 0; j < 16; ++j) pack_q3_scale(j, Ls[j], y[i].scales);
      y[i].d = f32_to_f16(d_block);
    }
    for (int j = 0; j < 16; ++j) {
      const float d = f16_to_f32(y[i].d) * q3_k_scale(j, y[i].scales);
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = int8_t(std::max(-4, std::min(3, l)) + 4);
      }
    }
    pack_levels(DType::Q3_K, reinterpret_cast<const uint8_t*>(L), reinterpret_cast<uint8_t*>(&y[i]));
  }
}

// Q4_K/Q5_K: eight 32-element sub-blocks with 6-bit scales and mins.
template <typename B, int kBits>
void quantize_q45_k(const float* x, int64_t nb, B* y, const float* qw) {
  constexpr int kMax = (1 << kBits) - 1;
  uint8_t L[QK_K], Laux[32], Ls[8], Lm[8];
  float weights[32], mins[8], scales[8], sw[8];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    if (!qw) {
      float max_scale = 0, max_min = 0;
      for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = kBits == 4
                        ? make_qkx_quants(32, kMax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20, false)
                        : make_qkx_quants(32, kMax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15, false);
        max_scale = std::max(max_scale, scales[j]);
        max_min = std::max(max_min, mins[j]);
      }
      const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
      const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
      for (int j = 0; j < 8; ++j) {
        Ls[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
        Lm[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
      }
      y[i].d = f32_to_f16(max_scale / 63.f);
      y[i].dmin = f32_to_f16(max_min / 63.f);
    } else {
      const float* w = qw + QK_K * i;
      float sum_x2 = 0;
      for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
      const float sigma2 = 2 * sum_x2 / QK_K;
      for (int j = 0; j < 8; ++j) {
        importance_weights(w + 32 * j, x + 32 * j, 32, sigma2, weights);
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = make_qkx_quants(32, kMax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
      }
      y[i].d = f32_to_f16(make_qp_quants(8, 63, scales, Ls, sw));
      y[i].dmin = f32_to_f16(make_qp_quants(8, 63, mins, Lm, sw));
    }
    for (int j = 0; j < 8; ++j) {
      if (j < 4) {
        y[i].scales[j] = Ls[j];
        y[i].scales[j + 4] = Lm[j];
      } else {
        y[i].scales[j + 4] = uint8_t((Ls[j] & 0xF) | ((Lm[j] & 0xF) << 4));
        y[i].scales[j - 4] = uint8_t(y[i].scales[j - 4] | ((Ls[j] >> 4) << 6));
        y[i].scales[j] = uint8_t(y[i].scales[j] | ((Lm[j] >> 4) << 6));
      }
    }
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      scale_min_k4(j, y[i].scales, sc, m);
      const float d = f16_to_f32(y[i].d) * sc;
      if (!d) continue;
      const float dm = f16_to_f32(y[i].dmin) * m;
      for (int ii = 0; ii < 32; ++ii) {
        const int l = nearest_int((x[32 * j + ii] + dm) / d);
        L[32 * j + ii] = uint8_t(std::max(0, std::min(kMax, l)));
      }
    }
    pack_levels(kBits == 4 ? DType::Q4_K : DType::Q5_K, L, reinterpret_cast<uint8_t*>(&y[i]));
  }
}

void quantize_q6_k(const float* x, int64_t nb, BlockQ6_K* y, const float* qw) {
  int8_t L[QK_K];
  float scales[16];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    for (int ib = 0; ib < 16; ++ib)
      scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw ? qw + QK_K * i + 16 * ib : nullptr);
    const float max_scale = signed_absmax(scales, 16);
    if (std::fabs(max_scale) < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(BlockQ6_K));
      y[i].d = f32_to_f16(0.f);
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = f32_to_f16(1 / iscale);
    for (int ib = 0; ib < 16; ++ib) y[i].scales[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < 16; ++j) {
      const float d = f16_to_f32(y[i].d) * y[i].scales[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = int8_t(std::max(-32, std::min(31, l)) + 32);
      }
    }
    pack_levels(DType::Q6_K, reinterpret_cast<const uint8_t*>(L), reinterpret_cast<uint8_t*>(&y[i]));
  }
}

// IQ4_NL and IQ4_XS as ggml_quantize_chunk runs them (quantize_row_iq4_nl_impl
// with 7 scale trials each way): per 32 values the best scale for the
// non-linear levels; IQ4_XS (a 256-value super-block) then stores those scales
// as 6-bit multiples of one f16 scale and requantizes each group under it.
// L: the super-block's level indices; scales_h/scales_l only for IQ4_XS.
void quantize_iq4(int super_block, const float* x, uint16_t* dh, uint8_t* q4, uint16_t* scales_h, uint8_t* scales_l,
                  const float* qw) {
  constexpr int ntry = 7, kBlock = 32;
  const int8_t* values = kIQ4NLValues;
  uint8_t L[QK_K];
  float weight[kBlock], scales[QK_K / kBlock];
  float sigma2 = 0;
  for (int j = 0; j < super_block; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / float(super_block);
  std::memset(q4, 0, size_t(super_block / 2));
  *dh = f32_to_f16(0.f);
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < super_block / kBlock; ++ib) {
    const float* xb = x + ib * kBlock;
    uint8_t* Lb = L + ib * kBlock;
    if (qw) {
      importance_weights(qw + ib * kBlock, xb, kBlock, sigma2, weight);
    } else {
      for (int j = 0; j < kBlock; ++j) weight[j] = xb[j] * xb[j];
    }
    float amax = 0, max = 0;
    for (int j = 0; j < kBlock; ++j)
      if (std::fabs(xb[j]) > amax) amax = std::fabs(xb[j]), max = xb[j];
    if (amax < kGroupMaxEps) {
      scales[ib] = 0;
      continue;
    }
    float d = -max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < kBlock; ++j) {
      const int l = best_index_int8(16, values, id * xb[j]);
      Lb[j] = uint8_t(l);
      const float q = values[l];
      sumqx += weight[j] * q * xb[j];
      sumq2 += weight[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = float(itry + values[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < kBlock; ++j) {
        const float q = values[best_index_int8(16, values, id * xb[j])];
        sumqx += weight[j] * q * xb[j];
        sumq2 += weight[j] * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    if (std::fabs(d) > amax_scale) amax_scale = std::fabs(d), max_scale = d;
  }
  if (super_block > kBlock) {
    *scales_h = 0;
    const float d = -max_scale / 32;
    *dh = f32_to_f16(d);
    const float id = d ? 1 / d : 0.f;
    for (int ib = 0; ib < super_block / kBlock; ++ib) {
      int l = std::max(-32, std::min(31, nearest_int(id * scales[ib])));
      const float dl = d * float(l);
      const float idl = dl ? 1 / dl : 0.f;
      for (int j = 0; j < kBlock; ++j) L[ib * kBlock + j] = uint8_t(best_index_int8(16, values, idl * x[ib * kBlock + j]));
      l += 32;
      if (ib % 2 == 0) scales_l[ib / 2] = uint8_t(l & 0xf);
      else scales_l[ib / 2] |= uint8_t((l & 0xf) << 4);
      *scales_h |= uint16_t((l >> 4) << 2 * (ib % 8));
    }
  } else {
    *dh = f32_to_f16(scales[0]);
    const float id = scales[0] ? 1 / scales[0] : 0;
    for (int j = 0; j < super_block; ++j) L[j] = uint8_t(best_index_int8(16, values, id * x[j]));
  }
  for (int i = 0; i < super_block / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

template <typename B>
B* blocks(uint8_t* p) {
  return reinterpret_cast<B*>(p);
}

}  // namespace

void quantize_row_q2_k(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_q2_k(x, n / QK_K, blocks<BlockQ2_K>(out), importance);
}
void quantize_row_q3_k(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_q3_k(x, n / QK_K, blocks<BlockQ3_K>(out), importance);
}
void quantize_row_q4_k(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_q45_k<BlockQ4_K, 4>(x, n / QK_K, blocks<BlockQ4_K>(out), importance);
}
void quantize_row_q5_k(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_q45_k<BlockQ5_K, 5>(x, n / QK_K, blocks<BlockQ5_K>(out), importance);
}
void quantize_row_q6_k(const float* x, int64_t n, uint8_t* out, const float* importance) {
  quantize_q6_k(x, n / QK_K, blocks<BlockQ6_K>(out), importance);
}
void quantize_row_iq4_nl(const float* x, int64_t n, uint8_t* out, const float* importance) {
  auto* y = blocks<BlockIQ4_NL>(out);
  for (int64_t b = 0; b < n / QK4_NL; b++)
    quantize_iq4(QK4_NL, x + b * QK4_NL, &y[b].d, y[b].qs, nullptr, nullptr, importance ? importance + b * QK4_NL : nullptr);
}
void quantize_row_iq4_xs(const float* x, int64_t n, uint8_t* out, const float* importance) {
  auto* y = blocks<BlockIQ4_XS>(out);
  for (int64_t b = 0; b < n / QK_K; b++)
    quantize_iq4(QK_K, x + b * QK_K, &y[b].d, y[b].qs, &y[b].scales_h, y[b].scales_l,
                 importance ? importance + b * QK_K : nullptr);
}

}  // namespace lmpress
