// AVX2 dot products of the k-quant super-blocks (Q2_K..Q6_K, 256 values)
// with Q8_K activations. Same conventions as qdot_avx2.cc: per-function
// target attributes, reached only after available().
#if defined(__x86_64__)  // x86 only: on other architectures this file is empty
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "kernels/avx2_helpers.h"
#include "kernels/qdot.h"
#include "kernels/blocks.h"

namespace lmpress::simd_avx2 {
namespace {

// 16 int16 lanes: the low 8 times scale s0, the high 8 times s1 (a 32-value
// run covering two 16-value scale groups).
__attribute__((target("avx2"))) inline __m256i two_scales(int s0, int s1) {
  return _mm256_set_m128i(_mm_set1_epi16(int16_t(s1)), _mm_set1_epi16(int16_t(s0)));
}

// Σ_g m[g]·bsums[g] over the 16 groups, for 16 unsigned 8-bit mins m.
__attribute__((target("avx2"))) inline int32_t mins_dot(__m128i m, const int16_t* bsums) {
  const __m256i p = _mm256_madd_epi16(_mm256_cvtepu8_epi16(m), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsums)));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

}  // namespace

// Q2_K: per 128 values 32 bytes whose bit pairs hold 4 runs of 32; each run
// covers two 16-value groups with 4-bit scales (low nibble) and mins (high).
__attribute__((target("avx2,fma,f16c"))) float dot_q2_K_q8_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ2_K*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  const __m256i three = _mm256_set1_epi8(3);
  const __m128i low = _mm_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float mins_total = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const uint8_t* sc = bw[b].scales;
    __m256i sumi = _mm256_setzero_si256();
    for (int c = 0; c < 2; c++) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].qs + 32 * c));
      for (int j = 0; j < 4; j++) {
        const int g = 8 * c + 2 * j;
        const __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), three);
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * c + 32 * j));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), two_scales(sc[g] & 0xF, sc[g + 1] & 0xF)));
      }
    }
    const __m128i m = _mm_and_si128(_mm_srli_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)), 4), low);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * h2f(bw[b].d)), _mm256_cvtepi32_ps(sumi), acc);
    mins_total += a[b].d * h2f(bw[b].dmin) * float(mins_dot(m, a[b].bsums));
  }
  return hsum(acc) - mins_total;
}

// Q3_K: Q2_K's bit pairs plus a third bit from hmask (bit 4c + j of byte l for
// run j of chunk c); values (pair | bit·4) − 4, so (v − 4)·y = v·y − 4·y.
__attribute__((target("avx2,fma,f16c"))) float dot_q3_K_q8_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ3_K*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    int scales[16];
    for (int g = 0; g < 16; g++) scales[g] = q3_k_scale(g, bw[b].scales);
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].hmask));
    __m256i sumi = _mm256_setzero_si256();
    for (int c = 0; c < 2; c++) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].qs + 32 * c));
      for (int j = 0; j < 4; j++) {
        const int g = 8 * c + 2 * j;
        const __m256i h = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * c + j), one);
        const __m256i v = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * j), three), _mm256_slli_epi16(h, 2));
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * c + 32 * j));
        const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(v, y), _mm256_maddubs_epi16(four, y));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, two_scales(scales[g], scales[g + 1])));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * h2f(bw[b].d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

namespace {

// Q4_K and Q5_K (Q5_K's fifth bit per value in qh: bit 2j for the low nibbles
// of sub-block pair j, bit 2j + 1 for the high ones). Unsigned values times
// signed int8: maddubs needs no sign trick.
template <class Block>
__attribute__((target("avx2,fma,f16c"))) float dot_q45_K(int64_t n, const void* w, const void* act) {
  constexpr bool kFive = std::is_same_v<Block, BlockQ5_K>;
  const auto* bw = static_cast<const Block*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  const __m256i low = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  float mins_total = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    __m256i sumi = _mm256_setzero_si256();
    int32_t mins = 0;
    __m256i hb = _mm256_setzero_si256();
    if constexpr (kFive) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].qh));
    for (int j = 0; j < 4; j++) {
      uint8_t sc1, m1, sc2, m2;
      scale_min_k4(2 * j, bw[b].scales, sc1, m1);
      scale_min_k4(2 * j + 1, bw[b].scales, sc2, m2);
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].qs + 32 * j));
      __m256i q1 = _mm256_and_si256(q, low);
      __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
      if constexpr (kFive) {
        q1 = _mm256_or_si256(q1, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j), one), 4));
        q2 = _mm256_or_si256(q2, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j + 1), one), 4));
      }
      const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * j));
      const __m256i y2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * j + 32));
      const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, y1), _mm256_set1_epi16(sc1));
      const __m256i p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(q2, y2), _mm256_set1_epi16(sc2));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p1, p2));
      mins += int32_t(m1) * (a[b].bsums[4 * j] + a[b].bsums[4 * j + 1]) +
              int32_t(m2) * (a[b].bsums[4 * j + 2] + a[b].bsums[4 * j + 3]);
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * h2f(bw[b].d)), _mm256_cvtepi32_ps(sumi), acc);
    mins_total += a[b].d * h2f(bw[b].dmin) * float(mins);
  }
  return hsum(acc) - mins_total;
}

}  // namespace

float dot_q4_K_q8_K(int64_t n, const void* w, const void* a) { return dot_q45_K<BlockQ4_K>(n, w, a); }
float dot_q5_K_q8_K(int64_t n, const void* w, const void* a) { return dot_q45_K<BlockQ5_K>(n, w, a); }

namespace {

// T tokens' dots with one Q6_K row, the 6-bit values unpacked once per block
// for all of them; each token's arithmetic is the one-token kernel's.
template <int T>
__attribute__((target("avx2,fma,f16c"))) void dot_q6_K_q8_K_t(int64_t n, const void* w, const uint8_t* act,
                                                             size_t act_bytes, float* out) {
  const auto* bw = static_cast<const BlockQ6_K*>(w);
  const __m256i low = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3);
  const __m256i off = _mm256_set1_epi8(32);
  __m256 acc[T];
  for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    __m256i sumi[T];
    for (int t = 0; t < T; t++) sumi[t] = _mm256_setzero_si256();
    const uint8_t* ql = bw[b].ql;
    const uint8_t* qh = bw[b].qh;
    for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
      // The four 32-element runs of this half, values 0..63 (stored + 32).
      const __m256i v[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, low), _mm256_slli_epi16(_mm256_and_si256(hb, two), 4)),
          _mm256_or_si256(_mm256_and_si256(l1, low),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), two), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), two), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), two), 4)),
      };
      for (int k = 0; k < 4; k++) {
        const int g = 8 * h + 2 * k;  // the run's two 16-element scale groups
        const __m256i sc = _mm256_setr_epi16(bw[b].scales[g], bw[b].scales[g], bw[b].scales[g], bw[b].scales[g],
                                             bw[b].scales[g], bw[b].scales[g], bw[b].scales[g], bw[b].scales[g],
                                             bw[b].scales[g + 1], bw[b].scales[g + 1], bw[b].scales[g + 1],
                                             bw[b].scales[g + 1], bw[b].scales[g + 1], bw[b].scales[g + 1],
                                             bw[b].scales[g + 1], bw[b].scales[g + 1]);
        for (int t = 0; t < T; t++) {
          const auto* a = reinterpret_cast<const BlockQ8_K*>(act + size_t(t) * act_bytes);
          const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * h + 32 * k));
          // (v − 32)·y = v·y − 32·y: v is unsigned, so maddubs applies directly.
          const __m256i vy = _mm256_maddubs_epi16(v[k], y);
          const __m256i oy = _mm256_maddubs_epi16(off, y);
          const __m256i p16 = _mm256_sub_epi16(vy, oy);
          sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p16, sc));
        }
      }
    }
    for (int t = 0; t < T; t++) {
      const auto* a = reinterpret_cast<const BlockQ8_K*>(act + size_t(t) * act_bytes);
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * h2f(bw[b].d)), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
    }
  }
  for (int t = 0; t < T; t++) out[t] = hsum(acc[t]);
}

}  // namespace

__attribute__((target("avx2,fma,f16c"))) float dot_q6_K_q8_K(int64_t n, const void* w, const void* act) {
  float out;
  dot_q6_K_q8_K_t<1>(n, w, static_cast<const uint8_t*>(act), 0, &out);
  return out;
}

void dot_q6_K_q8_K_multi(int64_t n, const void* w, const void* act, size_t act_bytes, int64_t tokens, float* out) {
  const auto* a = static_cast<const uint8_t*>(act);
  switch (tokens) {
    case 1: return dot_q6_K_q8_K_t<1>(n, w, a, act_bytes, out);
    case 2: return dot_q6_K_q8_K_t<2>(n, w, a, act_bytes, out);
    case 3: return dot_q6_K_q8_K_t<3>(n, w, a, act_bytes, out);
    default: return dot_q6_K_q8_K_t<4>(n, w, a, act_bytes, out);
  }
}

}  // namespace lmpress::simd_avx2
#endif  // defined(__x86_64__)
