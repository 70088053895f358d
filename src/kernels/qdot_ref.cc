#include "kernels/qdot_ref.h"

#include <cstring>
#include <type_traits>

#include "core/fp16.h"
#include "kernels/qdot.h"
#include "kernels/blocks.h"

namespace lmpress::qdot_ref {
namespace {

// The 32 five-bit values of a Q5_0/Q5_1 block (0..31): nibbles plus bit j of qh.
void q5_values(const uint8_t* qs, const uint8_t* qh4, int32_t* v) {
  uint32_t qh;
  std::memcpy(&qh, qh4, 4);
  for (int i = 0; i < 16; i++) {
    v[i] = int32_t((qs[i] & 0x0F) | (((qh >> i) & 1) << 4));
    v[i + 16] = int32_t((qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4));
  }
}

// Σ of a 32-element block's activation values.
int32_t act_sum(const BlockQ8_0& a) {
  int32_t s = 0;
  for (int8_t q : a.qs) s += q;
  return s;
}

// Q2_K and Q3_K store 2-bit values the same way: per 128 values, 32 bytes
// whose bit pairs 0..3 hold 4 runs of 32 values.
int32_t two_bits(const uint8_t* qs, int i) {
  const int chunk = i / 128, run = (i % 128) / 32, l = i % 32;
  return (qs[32 * chunk + l] >> (2 * run)) & 3;
}

// Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins, the mins
// meeting the activations through Q8_K's 16-element sums. Q5_K adds a fifth
// bit per value in qh (bit 2j for the low nibbles of sub-block pair j, bit
// 2j + 1 for the high ones).
template <class Block>
float q45_K(int64_t n, const void* w, const void* act) {
  constexpr bool kFive = std::is_same_v<Block, BlockQ5_K>;
  const auto* bw = static_cast<const Block*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int32_t dot = 0, mins = 0;
    for (int j = 0; j < 4; j++) {
      uint8_t sc1, m1, sc2, m2;
      scale_min_k4(2 * j, bw[b].scales, sc1, m1);
      scale_min_k4(2 * j + 1, bw[b].scales, sc2, m2);
      const uint8_t* q = bw[b].qs + 32 * j;
      const int8_t* y = a[b].qs + 64 * j;
      int32_t s1 = 0, s2 = 0;
      for (int l = 0; l < 32; l++) {
        int32_t lo = q[l] & 0x0F, hi = q[l] >> 4;
        if constexpr (kFive) {
          lo |= ((bw[b].qh[l] >> (2 * j)) & 1) << 4;
          hi |= ((bw[b].qh[l] >> (2 * j + 1)) & 1) << 4;
        }
        s1 += lo * y[l];
        s2 += hi * y[32 + l];
      }
      dot += int32_t(sc1) * s1 + int32_t(sc2) * s2;
      mins += int32_t(m1) * (a[b].bsums[4 * j] + a[b].bsums[4 * j + 1]) +
              int32_t(m2) * (a[b].bsums[4 * j + 2] + a[b].bsums[4 * j + 3]);
    }
    sum += a[b].d * (f16_to_f32(bw[b].d) * float(dot) - f16_to_f32(bw[b].dmin) * float(mins));
  }
  return sum;
}

}  // namespace

float q4_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ4_0*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; b++) {
    int32_t s = 0;
    for (int i = 0; i < 16; i++) {
      s += (int32_t(bw[b].qs[i] & 0x0F) - 8) * a[b].qs[i];
      s += (int32_t(bw[b].qs[i] >> 4) - 8) * a[b].qs[i + 16];
    }
    sum += float(s) * f16_to_f32(bw[b].d) * f16_to_f32(a[b].d);
  }
  return sum;
}

float q5_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ5_0*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; b++) {
    int32_t v[32], s = 0;
    q5_values(bw[b].qs, bw[b].qh, v);
    for (int i = 0; i < 32; i++) s += (v[i] - 16) * a[b].qs[i];
    sum += float(s) * f16_to_f32(bw[b].d) * f16_to_f32(a[b].d);
  }
  return sum;
}

float q8_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ8_0*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; b++) {
    int32_t s = 0;
    for (int i = 0; i < 32; i++) s += int32_t(bw[b].qs[i]) * a[b].qs[i];
    sum += float(s) * f16_to_f32(bw[b].d) * f16_to_f32(a[b].d);
  }
  return sum;
}

// Q6_K: 16 groups of 16 with int8 scales; values (4 low bits in ql, 2 high in qh) − 32.
float q6_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ6_K*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int8_t v[QK_K];
    q6_k_values(bw[b], v);
    int32_t dot = 0;
    for (int g = 0; g < 16; g++) {
      int32_t s = 0;
      for (int l = 0; l < 16; l++) s += int32_t(v[16 * g + l]) * a[b].qs[16 * g + l];
      dot += int32_t(bw[b].scales[g]) * s;
    }
    sum += a[b].d * f16_to_f32(bw[b].d) * float(dot);
  }
  return sum;
}

float f16(int64_t n, const void* w, const float* x) {
  const auto* h = static_cast<const uint16_t*>(w);
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += f16_to_f32(h[i]) * x[i];
  return s;
}

float bf16(int64_t n, const void* w, const float* x) {
  const auto* h = static_cast<const uint16_t*>(w);
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += bits_to_f32(uint32_t(h[i]) << 16) * x[i];
  return s;
}

float q4_1(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ4_1*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; b++) {
    int32_t s = 0;
    for (int i = 0; i < 16; i++) s += int32_t(bw[b].qs[i] & 0x0F) * a[b].qs[i] + int32_t(bw[b].qs[i] >> 4) * a[b].qs[i + 16];
    // w = d·q + m: Σ w·x = d·da·Σ q·a + m·da·Σ a
    const float da = f16_to_f32(a[b].d);
    sum += f16_to_f32(bw[b].d) * da * float(s) + f16_to_f32(bw[b].m) * da * float(act_sum(a[b]));
  }
  return sum;
}

float q5_1(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ5_1*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; b++) {
    int32_t v[32], s = 0;
    q5_values(bw[b].qs, bw[b].qh, v);
    for (int i = 0; i < 32; i++) s += v[i] * a[b].qs[i];
    const float da = f16_to_f32(a[b].d);
    sum += f16_to_f32(bw[b].d) * da * float(s) + f16_to_f32(bw[b].m) * da * float(act_sum(a[b]));
  }
  return sum;
}

float iq4_nl(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockIQ4_NL*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; b++) {
    int32_t s = 0;
    for (int i = 0; i < 16; i++)
      s += kIQ4NLValues[bw[b].qs[i] & 0x0F] * a[b].qs[i] + kIQ4NLValues[bw[b].qs[i] >> 4] * a[b].qs[i + 16];
    sum += f16_to_f32(bw[b].d) * f16_to_f32(a[b].d) * float(s);
  }
  return sum;
}

// Q2_K: 16 groups of 16 with a 4-bit scale (low nibble) and 4-bit min (high
// nibble): w = d·sc·q − dmin·m, the mins meeting Q8_K's 16-element sums.
float q2_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ2_K*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int32_t dot = 0, mins = 0;
    for (int g = 0; g < 16; g++) {
      int32_t s = 0;
      for (int l = 0; l < 16; l++) s += two_bits(bw[b].qs, 16 * g + l) * a[b].qs[16 * g + l];
      dot += int32_t(bw[b].scales[g] & 0xF) * s;
      mins += int32_t(bw[b].scales[g] >> 4) * a[b].bsums[g];
    }
    sum += a[b].d * (f16_to_f32(bw[b].d) * float(dot) - f16_to_f32(bw[b].dmin) * float(mins));
  }
  return sum;
}

// Q3_K: 2 low bits as Q2_K, the third in hmask (bit `chunk·4 + run` of byte
// i % 32), cleared meaning −4; 16 six-bit signed scales.
float q3_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ3_K*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int8_t v[QK_K];
    q3_k_values(bw[b], v);
    int32_t dot = 0;
    for (int g = 0; g < 16; g++) {
      int32_t s = 0;
      for (int l = 0; l < 16; l++) s += int32_t(v[16 * g + l]) * a[b].qs[16 * g + l];
      dot += q3_k_scale(g, bw[b].scales) * s;
    }
    sum += a[b].d * f16_to_f32(bw[b].d) * float(dot);
  }
  return sum;
}

float q4_K(int64_t n, const void* w, const void* a) { return q45_K<BlockQ4_K>(n, w, a); }
float q5_K(int64_t n, const void* w, const void* a) { return q45_K<BlockQ5_K>(n, w, a); }

}  // namespace lmpress::qdot_ref
