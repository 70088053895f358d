#include "kernels/kivi.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/qdot.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lmpress {
namespace {

#if defined(__x86_64__)
// 8 codes from value `from` (a multiple of 8) as bytes in order.
__attribute__((target("avx2"))) inline __m128i codes8(int bits, const uint8_t* q, int64_t from) {
  if (bits == 4) {
    int32_t w;
    std::memcpy(&w, q + from / 2, 4);
    const __m128i b = _mm_cvtsi32_si128(w), m = _mm_set1_epi8(0x0F);
    return _mm_unpacklo_epi8(_mm_and_si128(b, m), _mm_and_si128(_mm_srli_epi16(b, 4), m));
  }
  int16_t w;
  std::memcpy(&w, q + from / 4, 2);
  const __m128i b = _mm_cvtsi32_si128(uint16_t(w)), m = _mm_set1_epi8(3);
  const __m128i a0 = _mm_and_si128(b, m), a1 = _mm_and_si128(_mm_srli_epi16(b, 2), m);
  const __m128i a2 = _mm_and_si128(_mm_srli_epi16(b, 4), m), a3 = _mm_and_si128(_mm_srli_epi16(b, 6), m);
  return _mm_unpacklo_epi16(_mm_unpacklo_epi8(a0, a1), _mm_unpacklo_epi8(a2, a3));
}

// kivi_dequantize for from and n multiples of 8: the scalar loop's operations
// (code · d, then + m), so the same floats.
__attribute__((target("avx2"))) void dequantize_avx2(int bits, const uint8_t* q, float d, float m, int64_t from,
                                                     int64_t n, float* out) {
  const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(codes8(bits, q, from + i)));
    _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_mul_ps(c, vd), vm));
  }
}
#endif

}  // namespace

void kivi_quantize(int bits, const float* x, int64_t stride, int64_t g, uint8_t* out) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < g; i++) lo = std::min(lo, x[i * stride]), hi = std::max(hi, x[i * stride]);
  const int levels = (1 << bits) - 1;
  const uint16_t m_h = f32_to_f16(lo), d_h = f32_to_f16((hi - lo) / float(levels));
  const float m = f16_to_f32(m_h), d = f16_to_f32(d_h);
  const float inv = d > 0 ? 1.0f / d : 0.0f;
  std::memcpy(out, &d_h, 2);
  std::memcpy(out + 2, &m_h, 2);
  uint8_t* q = out + 4;
  std::memset(q, 0, size_t(g * bits / 8));
  const int per_byte = 8 / bits;
  for (int64_t i = 0; i < g; i++) {
    const int c = std::clamp(int(std::lround((x[i * stride] - m) * inv)), 0, levels);
    q[i / per_byte] |= uint8_t(c << (bits * (i % per_byte)));
  }
}

void kivi_dequantize(int bits, const uint8_t* group, int64_t, int64_t from, int64_t n, float* out) {
  uint16_t d_h, m_h;
  std::memcpy(&d_h, group, 2);
  std::memcpy(&m_h, group + 2, 2);
  const float d = f16_to_f32(d_h), m = f16_to_f32(m_h);
  const uint8_t* q = group + 4;
#if defined(__x86_64__)
  if (from % 8 == 0 && n % 8 == 0 && qdot_simd_active()) return dequantize_avx2(bits, q, d, m, from, n, out);
#endif
  const int per_byte = 8 / bits, mask = (1 << bits) - 1;
  for (int64_t i = 0; i < n; i++) {
    const int64_t j = from + i;
    out[i] = float((q[j / per_byte] >> (bits * (j % per_byte))) & mask) * d + m;
  }
}

}  // namespace lmpress
