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

// The int16 scales of a Q2_K/Q3_K run: run j (0..3) of a 128-value chunk
// covers groups 2j (its first 16 values) and 2j + 1. `half` holds the
// chunk's 8 group scales as int16 in both 128-bit lanes; the shuffle
// broadcasts word 2j over the low lane and word 2j + 1 over the high one.
__attribute__((target("avx2"))) inline __m256i run_scales(__m256i half, int j) {
  const int8_t lo = int8_t(4 * j), hi = int8_t(4 * j + 2);
  const __m256i pick = _mm256_setr_epi8(lo, int8_t(lo + 1), lo, int8_t(lo + 1), lo, int8_t(lo + 1), lo, int8_t(lo + 1),
                                        lo, int8_t(lo + 1), lo, int8_t(lo + 1), lo, int8_t(lo + 1), lo, int8_t(lo + 1),
                                        hi, int8_t(hi + 1), hi, int8_t(hi + 1), hi, int8_t(hi + 1), hi, int8_t(hi + 1),
                                        hi, int8_t(hi + 1), hi, int8_t(hi + 1), hi, int8_t(hi + 1), hi, int8_t(hi + 1));
  return _mm256_shuffle_epi8(half, pick);
}

// 16 int16 group scales → the two chunks' `half` vectors of run_scales.
struct ChunkScales {
  __m256i half[2];
};
__attribute__((target("avx2"))) inline ChunkScales chunk_scales(__m256i s16) {
  const __m128i lo = _mm256_castsi256_si128(s16), hi = _mm256_extracti128_si256(s16, 1);
  return {{_mm256_set_m128i(lo, lo), _mm256_set_m128i(hi, hi)}};
}

}  // namespace

// Q2_K: per 128 values 32 bytes whose bit pairs hold 4 runs of 32; each run
// covers two 16-value groups with 4-bit scales (low nibble) and mins (high).
// Σ = d·Σ_g scale_g·(q·y)_g − dmin·Σ_g min_g·bsum_g; both sums stay in
// vectors across blocks.
__attribute__((target("avx2,fma,f16c"))) float dot_q2_K_q8_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ2_K*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  const __m256i three = _mm256_set1_epi8(3);
  const __m128i low = _mm_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps(), acc_m = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bw[b].scales));
    const ChunkScales cs = chunk_scales(_mm256_cvtepu8_epi16(_mm_and_si128(sc, low)));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), low));
    const __m256i mprod = _mm256_madd_epi16(mins, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].bsums)));
    __m256i sumi[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int c = 0; c < 2; c++) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].qs + 32 * c));
      for (int j = 0; j < 4; j++) {
        const __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), three);
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * c + 32 * j));
        sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), run_scales(cs.half[c], j)));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * h2f(bw[b].d)), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi[0], sumi[1])), acc);
    acc_m = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * h2f(bw[b].dmin)), _mm256_cvtepi32_ps(mprod), acc_m);
  }
  return hsum(acc) - hsum(acc_m);
}

// Q3_K: Q2_K's bit pairs plus a third bit from hmask (bit 4c + j of byte l for
// run j of chunk c): unsigned values v = pair | bit·4 in 0..7 stand for v − 4,
// so Σ_g scale_g·(v − 4)·y = Σ_g scale_g·(v·y)_g − 4·Σ_g scale_g·bsum_g. The
// 16 signed 6-bit scales come out of their 12 bytes as ggml unpacks them.
__attribute__((target("avx2,fma,f16c"))) float dot_q3_K_q8_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ3_K*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  const __m256i three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
  const uint32_t k4 = 0x0f0f0f0f, k2 = 0x03030303;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    uint32_t s[3];
    std::memcpy(s, bw[b].scales, 12);
    const __m128i sc8 = _mm_sub_epi8(_mm_set_epi32(int32_t(((s[1] >> 4) & k4) | (((s[2] >> 6) & k2) << 4)),
                                                   int32_t(((s[0] >> 4) & k4) | (((s[2] >> 4) & k2) << 4)),
                                                   int32_t((s[1] & k4) | (((s[2] >> 2) & k2) << 4)),
                                                   int32_t((s[0] & k4) | ((s[2] & k2) << 4))),
                                     _mm_set1_epi8(32));
    const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
    const ChunkScales cs = chunk_scales(sc16);
    const __m256i offset = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].bsums)));
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].hmask));
    __m256i sumi[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int c = 0; c < 2; c++) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].qs + 32 * c));
      for (int j = 0; j < 4; j++) {
        // hmask bit p = 4c + j moved to bit 2 of its byte (a shift of at most 5 keeps it in the byte).
        const int p = 4 * c + j;
        const __m256i h = _mm256_and_si256(p >= 2 ? _mm256_srli_epi16(hm, p - 2) : _mm256_slli_epi16(hm, 2 - p), four);
        const __m256i v = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * j), three), h);
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * c + 32 * j));
        sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(_mm256_maddubs_epi16(v, y), run_scales(cs.half[c], j)));
      }
    }
    const __m256i total = _mm256_sub_epi32(_mm256_add_epi32(sumi[0], sumi[1]), _mm256_slli_epi32(offset, 2));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * h2f(bw[b].d)), _mm256_cvtepi32_ps(total), acc);
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
  __m256 acc[T];
  for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    __m256i sumi[T];
    for (int t = 0; t < T; t++) sumi[t] = _mm256_setzero_si256();
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bw[b].scales)));
    const ChunkScales cs = chunk_scales(sc16);
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
        const __m256i sc = run_scales(cs.half[h], k);  // the run's two 16-element scale groups
        for (int t = 0; t < T; t++) {
          const auto* a = reinterpret_cast<const BlockQ8_K*>(act + size_t(t) * act_bytes);
          const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * h + 32 * k));
          sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(_mm256_maddubs_epi16(v[k], y), sc));
        }
      }
    }
    // (v − 32)·y = v·y − 32·y: the 32s come off once per block through the bsums.
    for (int t = 0; t < T; t++) {
      const auto* a = reinterpret_cast<const BlockQ8_K*>(act + size_t(t) * act_bytes);
      const __m256i offset = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].bsums)));
      sumi[t] = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32(offset, 5));
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
