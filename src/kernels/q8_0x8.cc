#include "kernels/q8_0x8.h"

#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/interleave.h"
#include "kernels/qdot.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/avx2_helpers.h"
#include "kernels/x8_vnni.h"
#endif

namespace lmpress {

void pack_q8_0x8(const BlockQ8_0* rows, int64_t cols, BlockQ8_0x8* out) {
  const int64_t nb = cols / 32;
  for (int64_t b = 0; b < nb; b++)
    for (int r = 0; r < 8; r++) {
      const BlockQ8_0& s = rows[r * nb + b];
      out[b].d[r] = s.d;
      for (int v = 0; v < 8; v++) std::memcpy(&out[b].qs[v][4 * r], s.qs + 4 * v, 4);
    }
}

void unpack_q8_0x8_row(const BlockQ8_0x8* group, int64_t cols, int r, BlockQ8_0* out) {
  for (int64_t b = 0; b < cols / 32; b++) {
    out[b].d = group[b].d[r];
    for (int v = 0; v < 8; v++) std::memcpy(out[b].qs + 4 * v, &group[b].qs[v][4 * r], 4);
  }
}

void dequantize_q8_0x8_row(const BlockQ8_0x8* group, int64_t cols, int r, float* out) {
  for (int64_t b = 0; b < cols / 32; b++, out += 32) {
    const float d = f16_to_f32(group[b].d[r]);
    for (int v = 0; v < 8; v++)
      for (int i = 0; i < 4; i++) out[4 * v + i] = d * float(group[b].qs[v][4 * r + i]);
  }
}

Tensor repack_q8_0x8(const Tensor& t) {
  return repack_x8<BlockQ8_0, BlockQ8_0x8>(t, DType::Q8_0, DType::Q8_0_X8, [](const BlockQ8_0* rows, int64_t cols,
                                                                              BlockQ8_0x8* out) {
    pack_q8_0x8(rows, cols, out);
    return true;
  });
}

std::vector<uint8_t> unpack_q8_0x8(const Tensor& t) { return unpack_x8<BlockQ8_0, BlockQ8_0x8>(t, unpack_q8_0x8_row); }

void gemv_q8_0x8_ref(int64_t cols, const BlockQ8_0x8* g, const BlockQ8_0* a, float* out) {
  float acc[8] = {};
  for (int64_t b = 0; b < cols / 32; b++) {
    int32_t dot[8] = {};
    for (int v = 0; v < 8; v++)
      for (int r = 0; r < 8; r++)
        for (int i = 0; i < 4; i++) dot[r] += int32_t(g[b].qs[v][4 * r + i]) * a[b].qs[4 * v + i];
    for (int r = 0; r < 8; r++) acc[r] += f16_to_f32(g[b].d[r]) * f16_to_f32(a[b].d) * float(dot[r]);
  }
  std::memcpy(out, acc, sizeof(acc));
}

#if defined(__x86_64__)
namespace {

__attribute__((target("avx2,fma,f16c"))) void gemv_q8_0x8_avx2(int64_t cols, const BlockQ8_0x8* g, const BlockQ8_0* a,
                                                              float* out) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / 32; b++) {
    simd_avx2::prefetch_ahead<sizeof(BlockQ8_0x8)>(g + b);
    __m256i dot = _mm256_setzero_si256();
    for (int v = 0; v < 8; v++) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qs[v]));
      int32_t x4;
      std::memcpy(&x4, a[b].qs + 4 * v, 4);
      const __m256i x = _mm256_set1_epi32(x4);
      dot = _mm256_add_epi32(dot, simd_avx2::dot_i8_lanes(w, x));
    }
    acc = simd_avx2::fma_row_scales(g[b].d, a[b].d, dot, acc);
  }
  _mm256_storeu_ps(out, acc);
}

// |w| is computed once per load for all 4 tokens; each token's 4 broadcast
// bytes take w's sign (llama.cpp's sign trick, so maddubs sees an unsigned
// operand). A maddubs pair is at most 2·128·127, so each goes to int32 at once.
__attribute__((target("avx2,fma,f16c"))) void gemm4_q8_0x8_avx2(int64_t cols, const BlockQ8_0x8* g,
                                                               const BlockQ8_0* a, int64_t stride, float* out,
                                                               int64_t out_stride) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < cols / 32; b++) {
    __m256i dot[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    for (int v = 0; v < 8; v++) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qs[v]));
      const __m256i aw = _mm256_sign_epi8(w, w);
      for (int t = 0; t < 4; t++) {
        int32_t x4;
        std::memcpy(&x4, a[t * stride + b].qs + 4 * v, 4);
        const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_set1_epi32(x4), w));
        dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(p, ones));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[b].d)));
    for (int t = 0; t < 4; t++)
      acc[t] = simd_avx2::fma_scaled(d, a[t * stride + b].d, dot[t], acc[t]);
  }
  for (int t = 0; t < 4; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

}  // namespace
#endif  // defined(__x86_64__)

X8Kernels q8_0x8_kernels() {
#if defined(__x86_64__)
  return x8_kernels_with_vnni<BlockQ8_0x8, BlockQ8_0, gemv_q8_0x8_ref, gemv_q8_0x8_avx2, gemm4_q8_0x8_avx2,
                              simd_avxvnni::gemm4_q8_0x8, simd_avx512vnni::gemm4_q8_0x8,
                              simd_vnni_emulated::gemm4_q8_0x8, simd_avxvnni::gemmn_q8_0x8,
                              simd_avx512vnni::gemmn_q8_0x8, simd_vnni_emulated::gemmn_q8_0x8>();
#else
  return x8_reference_kernels<BlockQ8_0x8, BlockQ8_0, gemv_q8_0x8_ref>();
#endif
}

void gemm4_q8_0x8(int64_t cols, const BlockQ8_0x8* g, const BlockQ8_0* a, int64_t stride, float* out,
                  int64_t out_stride) {
  q8_0x8_kernels().gemm4(cols, g, a, nullptr, stride, out, out_stride);
}

void gemv_q8_0x8(int64_t cols, const BlockQ8_0x8* g, const BlockQ8_0* a, float* out) {
  q8_0x8_kernels().gemv(cols, g, a, nullptr, out);
}

}  // namespace lmpress
