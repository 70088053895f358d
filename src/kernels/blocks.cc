#include "kernels/blocks.h"

#include <cstring>

#include "core/fp16.h"
#include "kernels/int_blocks.h"
#include "kernels/interleaved.h"
#include "kernels/bitmap.h"
#include "kernels/sparse24.h"

namespace lmpress {

const int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

namespace {

void deq_q4_0(const BlockQ4_0* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; i++, y += QK4_0) {
    const float d = f16_to_f32(x[i].d);
    for (int j = 0; j < QK4_0 / 2; j++) {
      y[j] = float((x[i].qs[j] & 0x0F) - 8) * d;
      y[j + QK4_0 / 2] = float((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void deq_q4_1(const BlockQ4_1* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; i++, y += QK4_1) {
    const float d = f16_to_f32(x[i].d), m = f16_to_f32(x[i].m);
    for (int j = 0; j < QK4_1 / 2; j++) {
      y[j] = float(x[i].qs[j] & 0x0F) * d + m;
      y[j + QK4_1 / 2] = float(x[i].qs[j] >> 4) * d + m;
    }
  }
}

// Q5: the fifth bit of element j is bit j of qh (j < 16) or bit j of qh for the upper half.
template <typename B, bool kHasMin>
void deq_q5(const B* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = f16_to_f32(x[i].d);
    float m = 0;
    if constexpr (kHasMin) m = f16_to_f32(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < 16; j++) {
      const int h0 = ((qh >> j) << 4) & 0x10;
      const int h1 = (qh >> (j + 12)) & 0x10;
      const int q0 = (x[i].qs[j] & 0x0F) | h0, q1 = (x[i].qs[j] >> 4) | h1;
      if constexpr (kHasMin) {
        y[j] = float(q0) * d + m;
        y[j + 16] = float(q1) * d + m;
      } else {
        y[j] = float(q0 - 16) * d;
        y[j + 16] = float(q1 - 16) * d;
      }
    }
  }
}

void deq_q8_0(const BlockQ8_0* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; i++, y += QK8_0) {
    const float d = f16_to_f32(x[i].d);
    for (int j = 0; j < QK8_0; j++) y[j] = float(x[i].qs[j]) * d;
  }
}

void deq_q2_k(const BlockQ2_K* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; i++) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; half++) {
          const uint8_t sc = x[i].scales[is++];
          const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
          for (int l = 0; l < 16; l++) *y++ = dl * float((q[l + 16 * half] >> shift) & 3) - ml;
        }
      }
      q += 32;
    }
  }
}

void deq_q3_k(const BlockQ3_K* x, int64_t nb, float* y) {
  int8_t q[QK_K];
  for (int64_t i = 0; i < nb; i++, y += QK_K) {
    const float d_all = f16_to_f32(x[i].d);
    q3_k_values(x[i], q);
    for (int g = 0; g < 16; g++) {
      const float dl = d_all * float(q3_k_scale(g, x[i].scales));
      for (int l = 0; l < 16; l++) y[16 * g + l] = dl * float(q[16 * g + l]);
    }
  }
}

void deq_q4_k(const BlockQ4_K* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; i++) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
      uint8_t sc, m;
      scale_min_k4(is, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(is + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; l++) *y++ = d1 * float(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

void deq_q5_k(const BlockQ5_K* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; i++) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, m;
      scale_min_k4(is, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(is + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; l++) *y++ = d1 * float((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * float((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    }
  }
}

void deq_q6_k(const BlockQ6_K* x, int64_t nb, float* y) {
  int8_t q[QK_K];
  for (int64_t i = 0; i < nb; i++, y += QK_K) {
    const float d = f16_to_f32(x[i].d);
    q6_k_values(x[i], q);
    for (int l = 0; l < QK_K; l++) y[l] = d * float(x[i].scales[l / 16]) * float(q[l]);
  }
}

void deq_iq4_nl(const BlockIQ4_NL* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; i++, y += QK4_NL) {
    const float d = f16_to_f32(x[i].d);
    for (int j = 0; j < QK4_NL / 2; j++) {
      y[j] = d * float(kIQ4NLValues[x[i].qs[j] & 0xF]);
      y[j + QK4_NL / 2] = d * float(kIQ4NLValues[x[i].qs[j] >> 4]);
    }
  }
}

// Adapters to one signature: n elements from the row's first byte.
template <typename B, int kBlock, void (*F)(const B*, int64_t, float*)>
void per_block(const uint8_t* p, int64_t n, float* y) {
  F(reinterpret_cast<const B*>(p), n / kBlock, y);
}
template <typename B, void (*F)(const B*, int64_t, float*)>
void per_element(const uint8_t* p, int64_t n, float* y) {
  F(reinterpret_cast<const B*>(p), n, y);
}

using RowDequantizer = void (*)(const uint8_t* row, int64_t n, float* out);
struct DequantizerRow {
  DType type;
  RowDequantizer to_f32;
};
// One row per block format (ggml's to_float; the integer-unpacked types of
// kernels/int_blocks.h after it); F16_BITMAP's row is one row-indexed row.
const DequantizerRow kDequantizers[] = {
    {DType::Q4_0, per_block<BlockQ4_0, QK4_0, deq_q4_0>},
    {DType::Q4_1, per_block<BlockQ4_1, QK4_1, deq_q4_1>},
    {DType::Q5_0, per_block<BlockQ5_0, QK5_0, deq_q5<BlockQ5_0, false>>},
    {DType::Q5_1, per_block<BlockQ5_1, QK5_1, deq_q5<BlockQ5_1, true>>},
    {DType::Q8_0, per_block<BlockQ8_0, QK8_0, deq_q8_0>},
    {DType::Q2_K, per_block<BlockQ2_K, QK_K, deq_q2_k>},
    {DType::Q3_K, per_block<BlockQ3_K, QK_K, deq_q3_k>},
    {DType::Q4_K, per_block<BlockQ4_K, QK_K, deq_q4_k>},
    {DType::Q5_K, per_block<BlockQ5_K, QK_K, deq_q5_k>},
    {DType::Q6_K, per_block<BlockQ6_K, QK_K, deq_q6_k>},
    {DType::IQ4_NL, per_block<BlockIQ4_NL, QK4_NL, deq_iq4_nl>},
    {DType::F16_2OF4, per_element<BlockF16_2of4, dequantize_2of4_f16>},
    {DType::Q8_0_2OF4, per_element<BlockQ8_0_2of4, dequantize_2of4_q8_0>},
    {DType::F16_BITMAP, dequantize_bitmap_f16},
};

}  // namespace

bool dequantize_row(DType t, const uint8_t* p, int64_t n, float* y) {
  for (const auto& r : kDequantizers)
    if (r.type == t) {
      r.to_f32(p, n, y);
      return true;
    }
  if (const IntBlockFormat* f = int_block_format(t)) {
    dequantize_int_blocks(*f, p, n, y);
    return true;
  }
  return false;
}

bool dequantize_interleaved_row(DType t, const uint8_t* data, int64_t cols, int64_t r, float* out) {
  const InterleavedFormat* f = interleaved_format(t);
  if (!f) return false;
  f->dequantize_row(data + uint64_t(r / 8) * f->group_bytes(cols), cols, int(r % 8),
                    out);
  return true;
}

void q6_k_values(const BlockQ6_K& b, int8_t* q) {
  for (int h = 0; h < 2; h++, q += 128)
    for (int l = 0; l < 32; l++) {
      const uint8_t *ql = b.ql + 64 * h, qh = b.qh[32 * h + l];
      q[l] = int8_t(((ql[l] & 0xF) | ((qh & 3) << 4)) - 32);
      q[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh >> 2) & 3) << 4)) - 32);
      q[l + 64] = int8_t(((ql[l] >> 4) | (((qh >> 4) & 3) << 4)) - 32);
      q[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4)) - 32);
    }
}

void q3_k_values(const BlockQ3_K& b, int8_t* q) {
  for (int i = 0; i < QK_K; i++) {
    const int chunk = i / 128, run = (i % 128) / 32, l = i % 32;
    const int low = (b.qs[32 * chunk + l] >> (2 * run)) & 3;
    q[i] = int8_t(low - ((b.hmask[l] >> (4 * chunk + run)) & 1 ? 0 : 4));
  }
}

}  // namespace lmpress
