// AVX2 versions of the qdot kernels. Compiled with per-function target
// attributes (the build does not assume AVX2) and only called after
// available() says the CPU and OS support it.
#include <immintrin.h>

#include "core/fp16.h"
#include "kernels/qdot.h"

namespace lmpress::simd_avx2 {

bool available() {
  // libgcc's cpu model checks CPUID and that the OS enabled YMM state (XCR0).
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

namespace {

// 32 int8 products summed into 8 int32 lanes, then to float: the sign trick
// of llama.cpp (maddubs needs an unsigned first operand).
__attribute__((target("avx2,fma"))) inline __m256 dot_i8(__m256i x, __m256i y) {
  const __m256i ax = _mm256_sign_epi8(x, x);
  const __m256i sy = _mm256_sign_epi8(y, x);
  const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
  const __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
  return _mm256_cvtepi32_ps(p32);
}

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace

__attribute__((target("avx2,fma"))) float dot_q4_0_q8_0(int64_t n, const void* w, const BlockQ8_0* a) {
  const auto* bw = static_cast<const BlockQ4_0*>(w);
  __m256 acc = _mm256_setzero_ps();
  const __m128i low = _mm_set1_epi8(0x0F);
  const __m256i eight = _mm256_set1_epi8(8);
  for (int64_t b = 0; b < n / 32; b++) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bw[b].qs));
    const __m128i lo = _mm_and_si128(q, low);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
    const __m256i x = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), eight);
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const __m256 d = _mm256_set1_ps(f16_to_f32(bw[b].d) * f16_to_f32(a[b].d));
    acc = _mm256_fmadd_ps(d, dot_i8(x, y), acc);
  }
  return hsum(acc);
}

__attribute__((target("avx2,fma"))) float dot_q8_0_q8_0(int64_t n, const void* w, const BlockQ8_0* a) {
  const auto* bw = static_cast<const BlockQ8_0*>(w);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / 32; b++) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].qs));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const __m256 d = _mm256_set1_ps(f16_to_f32(bw[b].d) * f16_to_f32(a[b].d));
    acc = _mm256_fmadd_ps(d, dot_i8(x, y), acc);
  }
  return hsum(acc);
}

}  // namespace lmpress::simd_avx2
