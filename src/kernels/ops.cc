#include "kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "core/fp16.h"
#include "kernels/i8x8.h"
#include "kernels/qdot.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/avx2_helpers.h"
#define LMPRESS_AVX2_DISPATCH(call) \
  if (qdot_simd_active()) return call
#else
#define LMPRESS_AVX2_DISPATCH(call)
#endif

namespace lmpress {

void rmsnorm(const float* x, const float* w, int64_t n, float eps, float* out) {
  double ss = 0;
  for (int64_t i = 0; i < n; i++) ss += double(x[i]) * x[i];
  const float scale = float(1.0 / std::sqrt(ss / double(n) + eps));
  for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void fake_quant_int8_rows(float* x, int64_t n, int64_t cols) {
#pragma omp parallel for schedule(static) if (n > 1)
  for (int64_t t = 0; t < n; t++) fake_quant_i8_token(x + t * cols, cols);
}

void rope(float* v, int64_t n_heads, int64_t head_dim, int64_t pos, const std::vector<float>& inv_freqs,
          RopeLayout layout) {
  const int64_t pairs = int64_t(inv_freqs.size());
  const int64_t half = pairs;  // Halves: partner of i is i + rope_dim/2
  for (int64_t i = 0; i < pairs; i++) {
    const float theta = float(pos) * inv_freqs[size_t(i)];
    const float c = std::cos(theta), s = std::sin(theta);
    for (int64_t h = 0; h < n_heads; h++) {
      float* p = v + h * head_dim;
      const int64_t a = layout == RopeLayout::Interleaved ? 2 * i : i;
      const int64_t b = layout == RopeLayout::Interleaved ? 2 * i + 1 : i + half;
      const float x0 = p[a], x1 = p[b];
      p[a] = x0 * c - x1 * s;
      p[b] = x0 * s + x1 * c;
    }
  }
}

void silu_mul_ref(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void swiglu_oai_mul(float* gate, const float* up, int64_t n) {
  constexpr float kAlpha = 1.702f, kLimit = 7.0f;
  for (int64_t i = 0; i < n; i++) {
    const float g = std::min(gate[i], kLimit), u = std::clamp(up[i], -kLimit, kLimit);
    gate[i] = g / (1.0f + std::exp(kAlpha * -g)) * (u + 1.0f);
  }
}

constexpr float kGeluC = 0.7978845608028654f;  // √(2/π)

void gelu_tanh_mul_ref(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float g = gate[i];
    // 0.5·(1 + tanh z) = 1 / (1 + e^(−2z)): no cancellation for negative g.
    gate[i] = g / (1.0f + std::exp(-2.0f * kGeluC * (g + 0.044715f * g * g * g))) * up[i];
  }
}

void softcap(float* x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; i++) x[i] = cap * std::tanh(x[i] / cap);
}

#if defined(__x86_64__)
namespace {

__attribute__((target("avx2,fma"))) void gelu_tanh_mul_avx2(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
    const __m256 z = _mm256_mul_ps(_mm256_set1_ps(kGeluC), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), g3, g));
    const __m256 e = simd_avx2::exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), z));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)),
                                             _mm256_loadu_ps(up + i)));
  }
  gelu_tanh_mul_ref(gate + i, up + i, n - i);
}

__attribute__((target("avx2,fma"))) void silu_mul_avx2(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = simd_avx2::exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)),
                                             _mm256_loadu_ps(up + i)));
  }
  silu_mul_ref(gate + i, up + i, n - i);
}

__attribute__((target("avx2,f16c"))) void to_f16_avx2(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; i++) out[i] = f32_to_f16(x[i]);
}

__attribute__((target("avx2,f16c"))) void from_f16_avx2(const uint16_t* h, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  for (; i < n; i++) out[i] = f16_to_f32(h[i]);
}

__attribute__((target("avx2"))) void from_bf16_avx2(const uint16_t* h, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_slli_epi32(w, 16));
  }
  for (; i < n; i++) out[i] = bf16_to_f32(h[i]);
}

}  // namespace
#endif  // defined(__x86_64__)

void silu_mul(float* gate, const float* up, int64_t n) {
  LMPRESS_AVX2_DISPATCH(silu_mul_avx2(gate, up, n));
  silu_mul_ref(gate, up, n);
}

void gelu_tanh_mul(float* gate, const float* up, int64_t n) {
  LMPRESS_AVX2_DISPATCH(gelu_tanh_mul_avx2(gate, up, n));
  gelu_tanh_mul_ref(gate, up, n);
}

void from_f16(const uint16_t* h, int64_t n, float* out) {
  LMPRESS_AVX2_DISPATCH(from_f16_avx2(h, n, out));
  for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(h[i]);
}

void from_bf16(const uint16_t* h, int64_t n, float* out) {
  LMPRESS_AVX2_DISPATCH(from_bf16_avx2(h, n, out));
  for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(h[i]);
}

void to_f16(const float* x, int64_t n, uint16_t* out) {
  LMPRESS_AVX2_DISPATCH(to_f16_avx2(x, n, out));
  for (int64_t i = 0; i < n; i++) out[i] = f32_to_f16(x[i]);
}

}  // namespace lmpress
