// Small AVX2 building blocks shared by the decode kernels (quantized dots in
// qdot_avx2.cc, sparse layouts in src/sparse/). Each carries its own target
// attribute, so it is only ever reached after simd_avx2::available().
#pragma once
#if defined(__x86_64__)  // x86 only: on other architectures this file is empty
#include <immintrin.h>

#include <cstdint>

namespace lmpress::simd_avx2 {

// 32 int8 products summed into 8 int32 lanes (each lane: the 4 products of
// its bytes): the sign trick of llama.cpp (maddubs needs an unsigned first operand).
__attribute__((target("avx2"))) inline __m256i dot_i8_lanes(__m256i x, __m256i y) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// The same, converted to float.
__attribute__((target("avx2,fma"))) inline __m256 dot_i8(__m256i x, __m256i y) {
  return _mm256_cvtepi32_ps(dot_i8_lanes(x, y));
}

// vpdpbusd's exact result from AVX2 instructions: acc + Σ of each lane's 4
// unsigned-by-signed byte products. Even and odd bytes widened to 16 bits,
// then madd: every product (≤ 255·128) and pair sum fits, nothing saturates
// (maddubs would).
__attribute__((target("avx2"))) inline __m256i dpbusd_emulated(__m256i acc, __m256i u, __m256i s) {
  const __m256i mask = _mm256_set1_epi16(0x00FF);
  const __m256i u_even = _mm256_and_si256(u, mask), u_odd = _mm256_srli_epi16(u, 8);
  const __m256i s_even = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), s_odd = _mm256_srai_epi16(s, 8);
  return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even), _mm256_madd_epi16(u_odd, s_odd)));
}

// vpdpbusd's result by maddubs + madd: exact only where no two adjacent
// products sum past int16 (|s| ≤ 64 against any u: 2·255·64 < 32768), so
// callers hold that bound; a third of dpbusd_emulated's instructions.
__attribute__((target("avx2"))) inline __m256i dpbusd_small(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

// Block scales: the F16C instruction instead of the scalar bit conversion.
__attribute__((target("f16c"))) inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

// acc + d[r] · act_d · dot[r] for 8 rows' scales d, already converted (the
// 4-token kernels convert them once for all 4 tokens), and an activation
// block's f16 scale.
__attribute__((target("avx2,fma,f16c"))) inline __m256 fma_scaled(__m256 d, uint16_t act_d, __m256i dot, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(h2f(act_d))), _mm256_cvtepi32_ps(dot), acc);
}

// The epilogue of the 8-row layouts that store their values unsigned, one
// block and token, for 8 rows' converted scales d: their integer dots less
// Offset·Σa (Q4_0: value + 8, Q5_0: + 16), or, where the group has minimums
// (Q4_1, Q5_1: w = d·q + m), plus m·da·Σa; sum is Σ of the activation block's values.
template <class G, int Offset>
__attribute__((target("avx2,fma,f16c"))) inline __m256 fma_unsigned_block(const G& g, __m256 d, uint16_t act_d,
                                                                          int32_t sum, __m256i dot, __m256 acc) {
  if constexpr (requires(const G& x) { x.m; }) {
    acc = fma_scaled(d, act_d, dot, acc);
    const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g.m)));
    return _mm256_fmadd_ps(m, _mm256_set1_ps(h2f(act_d) * float(sum)), acc);
  } else {
    return fma_scaled(d, act_d, _mm256_sub_epi32(dot, _mm256_set1_epi32(Offset * sum)), acc);
  }
}

// The epilogue of the 8-row interleaved kernels, one block: fma_scaled with the
// 8 rows' f16 scales d8.
__attribute__((target("avx2,fma,f16c"))) inline __m256 fma_row_scales(const uint16_t* d8, uint16_t act_d, __m256i dot,
                                                                      __m256 acc) {
  return fma_scaled(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d8))), act_d, dot, acc);
}

// e^x, 8 at a time (Cephes' expf): e^x = 2^n · e^r with n = round(x·log2 e), r = x − n·ln 2 taken
// in two parts, e^r by a degree-6 polynomial, 2^n put in the exponent bits.
__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
  const __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);  // also −inf
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(_mm256_mul_ps(y, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // n is in [−126, 127] after the clamp: 2^n is a normal float.
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(under, y);
}
// Inputs below −87.3 (and −inf) give 0, above 88 e^88; a few ulp in between.

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The largest of 8 floats.
__attribute__((target("avx2"))) inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// r[0..8) are 8 rows of 8; afterwards r[j] holds column j.
__attribute__((target("avx2"))) inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; h++) {
    const int b = 4 * h;
    u[b + 0] = _mm256_shuffle_ps(t[b + 0], t[b + 2], 0x44);
    u[b + 1] = _mm256_shuffle_ps(t[b + 0], t[b + 2], 0xEE);
    u[b + 2] = _mm256_shuffle_ps(t[b + 1], t[b + 3], 0x44);
    u[b + 3] = _mm256_shuffle_ps(t[b + 1], t[b + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// Decoding streams every weight once at the memory's speed; asking a fixed
// distance ahead keeps more cache lines in flight than the hardware prefetcher
// alone (measured in bench/results/speed-vs-llama.md). One
// prefetch per cache line of a block; a prefetch never faults, so running past
// the end of a matrix is harmless.
constexpr size_t kPrefetchAhead = 2048;
template <size_t Bytes>
inline void prefetch_ahead(const void* block) {
  for (size_t o = 0; o < Bytes; o += 64) _mm_prefetch(static_cast<const char*>(block) + kPrefetchAhead + o, _MM_HINT_T0);
}

}  // namespace lmpress::simd_avx2
#endif  // defined(__x86_64__)
