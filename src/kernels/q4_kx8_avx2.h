// The AVX2 pieces of the Q4_K_x8 kernels (kernels/q4_kx8.h) that the AVX2
// versions (q4_kx8.cc) and the VNNI ones (x8_vnni_kernels.inc) share: reading
// the 8 rows' scales and mins, and the per-block epilogue.
#pragma once
#include <cstdint>

#include "kernels/q4_kx8.h"

namespace lmpress::q4_kx8_avx2 {

// Σ of activation sub-block j (32 values) from the Q8_K block's 16-value sums
// (plain C++: the scalar reference uses it too).
inline int32_t sub_sum(const BlockQ8_K& a, int j) { return a.bsums[2 * j] + a.bsums[2 * j + 1]; }

}  // namespace lmpress::q4_kx8_avx2

#if defined(__x86_64__)  // the rest is x86 only
#include <immintrin.h>

namespace lmpress::q4_kx8_avx2 {

// 8 bytes (one per row) widened to 8 int32 lanes.
__attribute__((target("avx2"))) inline __m256i rows_u8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// acc + a.d · (d · dot − dmin · mins) for the 8 rows of a block.
__attribute__((target("avx2,fma,f16c"))) inline __m256 block_epilogue(const BlockQ4_Kx8& g, float ad, __m256i dot,
                                                                     __m256i mins, __m256 acc) {
  const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g.d))),
                                 _mm256_set1_ps(ad));
  const __m256 dmin = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g.dmin))),
                                    _mm256_set1_ps(ad));
  acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc);
  return _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(mins), acc);
}

// The 8 rows' sub-block mins as int16 pairs: lane `row` of p[k] holds
// (m[2k][row], m[2k+1][row]), for vpmaddwd against pairs of activation sums.
struct MinPairs {
  __m256i p[4];
};
__attribute__((target("avx2"))) inline MinPairs min_pairs(const BlockQ4_Kx8& g) {
  MinPairs mp;
  for (int k = 0; k < 4; k++) {
    const __m128i lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(g.m[2 * k]));
    const __m128i hi = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(g.m[2 * k + 1]));
    mp.p[k] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(lo, hi));
  }
  return mp;
}

// Σ_j m[j][row] · (activation sub-block sum j), per row: the 8 sums (each
// |Σ| ≤ 32·128, an int16) as pairs (S2k, S2k+1) broadcast against min_pairs.
__attribute__((target("avx2"))) inline __m256i block_mins(const MinPairs& mp, const BlockQ8_K& a) {
  const __m256i sums = _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums)),
                                         _mm256_set1_epi16(1));
  // packs within 128-bit lanes: 32-bit elements 0, 1, 4, 5 are the pairs (S0,S1), (S2,S3), (S4,S5), (S6,S7).
  const __m256i pairs = _mm256_packs_epi32(sums, sums);
  __m256i s = _mm256_madd_epi16(mp.p[0], _mm256_permutevar8x32_epi32(pairs, _mm256_set1_epi32(0)));
  s = _mm256_add_epi32(s, _mm256_madd_epi16(mp.p[1], _mm256_permutevar8x32_epi32(pairs, _mm256_set1_epi32(1))));
  s = _mm256_add_epi32(s, _mm256_madd_epi16(mp.p[2], _mm256_permutevar8x32_epi32(pairs, _mm256_set1_epi32(4))));
  return _mm256_add_epi32(s, _mm256_madd_epi16(mp.p[3], _mm256_permutevar8x32_epi32(pairs, _mm256_set1_epi32(5))));
}
__attribute__((target("avx2"))) inline __m256i block_mins(const BlockQ4_Kx8& g, const BlockQ8_K& a) {
  return block_mins(min_pairs(g), a);
}

}  // namespace lmpress::q4_kx8_avx2
#endif  // defined(__x86_64__)
