// Small AVX2 building blocks shared by the decode kernels (quantized dots in
// qdot_avx2.cc, sparse layouts in src/sparse/). Each carries its own target
// attribute, so it is only ever reached after simd_avx2::available().
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace lmpress::simd_avx2 {

// 32 int8 products summed into 8 int32 lanes, then to float: the sign trick
// of llama.cpp (maddubs needs an unsigned first operand).
__attribute__((target("avx2,fma"))) inline __m256 dot_i8(__m256i x, __m256i y) {
  const __m256i ax = _mm256_sign_epi8(x, x);
  const __m256i sy = _mm256_sign_epi8(y, x);
  const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
  const __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
  return _mm256_cvtepi32_ps(p32);
}

// Block scales: the F16C instruction instead of the scalar bit conversion.
__attribute__((target("f16c"))) inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace lmpress::simd_avx2
