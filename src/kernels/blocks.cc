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
  const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
  for (int64_t i = 0; i < nb; i++) {
    const float d_all = f16_to_f32(x[i].d);
    // 16 6-bit scales: low 4 bits in bytes 0..7, high 2 bits in bytes 8..11.
    uint32_t aux[4];
    std::memcpy(aux, x[i].scales, 12);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t scales[16];
    std::memcpy(scales, aux, 16);
    const uint8_t* q = x[i].qs;
    const uint8_t* hm = x[i].hmask;
    uint8_t m = 1;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
      for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
        for (int half = 0; half < 2; half++) {
          const float dl = d_all * float(scales[is++] - 32);
          for (int l = 0; l < 16; l++) {
            const int k = l + 16 * half;
            *y++ = dl * float(((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4));
          }
        }
      }
      q += 32;
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
  for (int64_t i = 0; i < nb; i++) {
    const float d = f16_to_f32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; l++) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * float(sc[is]) * float(q1);
        y[l + 32] = d * float(sc[is + 2]) * float(q2);
        y[l + 64] = d * float(sc[is + 4]) * float(q3);
        y[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
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
  f->dequantize_row(data + uint64_t(r / 8) * uint64_t(cols / f->block_cols) * f->group_block_bytes, cols, int(r % 8),
                    out);
  return true;
}

}  // namespace lmpress
