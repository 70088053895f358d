#include "kernels/x8_vnni.h"

#include <cpuid.h>
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2_helpers.h"
#include "kernels/qdot.h"

namespace lmpress::simd_avxvnni {

bool available() {
  if (!simd_avx2::available() || __get_cpuid_max(0, nullptr) < 7) return false;
  unsigned a, b, c, d;
  __cpuid_count(7, 1, a, b, c, d);
  return a & (1u << 4);
}

namespace {

// 4 activation bytes (4 consecutive values) broadcast to every lane.
inline int32_t bytes4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

// As the AVX2 kernel, |w| once per load with each token's bytes taking w's
// sign, but one vpdpbusd per token instead of maddubs + madd + add.
__attribute__((target("avx2,fma,f16c,avxvnni"))) void gemm4_q8_0x8(int64_t cols, const BlockQ8_0x8* g,
                                                                 const BlockQ8_0* a, int64_t stride, float* out,
                                                                 int64_t out_stride) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (int64_t b = 0; b < cols / 32; b++) {
    const BlockQ8_0 *x0 = a + b, *x1 = a + stride + b, *x2 = a + 2 * stride + b, *x3 = a + 3 * stride + b;
    __m256i d0 = _mm256_setzero_si256(), d1 = d0, d2 = d0, d3 = d0;
    for (int v = 0; v < 8; v++) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qs[v]));
      const __m256i aw = _mm256_sign_epi8(w, w);
      d0 = _mm256_dpbusd_avx_epi32(d0, aw, _mm256_sign_epi8(_mm256_set1_epi32(bytes4(x0->qs + 4 * v)), w));
      d1 = _mm256_dpbusd_avx_epi32(d1, aw, _mm256_sign_epi8(_mm256_set1_epi32(bytes4(x1->qs + 4 * v)), w));
      d2 = _mm256_dpbusd_avx_epi32(d2, aw, _mm256_sign_epi8(_mm256_set1_epi32(bytes4(x2->qs + 4 * v)), w));
      d3 = _mm256_dpbusd_avx_epi32(d3, aw, _mm256_sign_epi8(_mm256_set1_epi32(bytes4(x3->qs + 4 * v)), w));
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[b].d)));
    acc0 = simd_avx2::fma_scaled(d, x0->d, d0, acc0);
    acc1 = simd_avx2::fma_scaled(d, x1->d, d1, acc1);
    acc2 = simd_avx2::fma_scaled(d, x2->d, d2, acc2);
    acc3 = simd_avx2::fma_scaled(d, x3->d, d3, acc3);
  }
  _mm256_storeu_ps(out, acc0);
  _mm256_storeu_ps(out + out_stride, acc1);
  _mm256_storeu_ps(out + 2 * out_stride, acc2);
  _mm256_storeu_ps(out + 3 * out_stride, acc3);
}

// Q4_0 nibbles are unsigned (value + 8): they go straight into vpdpbusd's
// unsigned operand; the +8 comes off through 8·Σ activations, as in AVX2.
__attribute__((target("avx2,fma,f16c,avxvnni"))) void gemm4_q4_0x8(int64_t cols, const BlockQ4_0x8* g,
                                                                 const BlockQ8_0* a, const int32_t* sums,
                                                                 int64_t stride, float* out, int64_t out_stride) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < cols / 32; b++) {
    __m256i d0 = _mm256_setzero_si256(), d1 = d0, d2 = d0, d3 = d0;
    for (int v = 0; v < 4; v++) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qs + 32 * v));
      const __m256i lo = _mm256_and_si256(q, low), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
      const int8_t* y0 = a[b].qs;
      const int8_t* y1 = a[stride + b].qs;
      const int8_t* y2 = a[2 * stride + b].qs;
      const int8_t* y3 = a[3 * stride + b].qs;
      d0 = _mm256_dpbusd_avx_epi32(d0, lo, _mm256_set1_epi32(bytes4(y0 + 4 * v)));
      d0 = _mm256_dpbusd_avx_epi32(d0, hi, _mm256_set1_epi32(bytes4(y0 + 4 * (v + 4))));
      d1 = _mm256_dpbusd_avx_epi32(d1, lo, _mm256_set1_epi32(bytes4(y1 + 4 * v)));
      d1 = _mm256_dpbusd_avx_epi32(d1, hi, _mm256_set1_epi32(bytes4(y1 + 4 * (v + 4))));
      d2 = _mm256_dpbusd_avx_epi32(d2, lo, _mm256_set1_epi32(bytes4(y2 + 4 * v)));
      d2 = _mm256_dpbusd_avx_epi32(d2, hi, _mm256_set1_epi32(bytes4(y2 + 4 * (v + 4))));
      d3 = _mm256_dpbusd_avx_epi32(d3, lo, _mm256_set1_epi32(bytes4(y3 + 4 * v)));
      d3 = _mm256_dpbusd_avx_epi32(d3, hi, _mm256_set1_epi32(bytes4(y3 + 4 * (v + 4))));
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[b].d)));
    const __m256i dots[4] = {d0, d1, d2, d3};
    for (int t = 0; t < 4; t++) {
      const __m256i dot = _mm256_sub_epi32(dots[t], _mm256_set1_epi32(8 * sums[t * stride + b]));
      acc[t] = simd_avx2::fma_scaled(d, a[t * stride + b].d, dot, acc[t]);
    }
  }
  for (int t = 0; t < 4; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

}  // namespace lmpress::simd_avxvnni
