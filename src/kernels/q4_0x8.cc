#include "kernels/q4_0x8.h"

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

namespace {

// Weight k (0..31) of a Q4_0 / Q4_1 block, as its stored nibble (Q4_0: value + 8).
template <class Row>
uint8_t nibble(const Row& b, int k) { return k < 16 ? b.qs[k] & 0x0F : b.qs[k - 16] >> 4; }

template <class Row, class G>
void pack_q4x8(const Row* rows, int64_t cols, G* out) {
  const int64_t nb = cols / 32;
  for (int64_t b = 0; b < nb; b++) {
    G& o = out[b];
    for (int r = 0; r < 8; r++) {
      const Row& s = rows[r * nb + b];
      o.d[r] = s.d;
      if constexpr (kHasMinimums<G>) o.m[r] = s.m;
      for (int v = 0; v < 4; v++)
        for (int i = 0; i < 4; i++)
          o.qs[32 * v + 4 * r + i] = uint8_t(nibble(s, 4 * v + i) | nibble(s, 4 * (v + 4) + i) << 4);
    }
  }
}

template <class G, class Row>
void unpack_q4x8_row(const G* group, int64_t cols, int r, Row* out) {
  for (int64_t b = 0; b < cols / 32; b++) {
    const G& g = group[b];
    Row& o = out[b];
    o.d = g.d[r];
    if constexpr (kHasMinimums<G>) o.m = g.m[r];
    uint8_t w[32];
    for (int v = 0; v < 4; v++)
      for (int i = 0; i < 4; i++) {
        const uint8_t q = g.qs[32 * v + 4 * r + i];
        w[4 * v + i] = q & 0x0F;
        w[4 * (v + 4) + i] = q >> 4;
      }
    for (int k = 0; k < 16; k++) o.qs[k] = uint8_t(w[k] | w[k + 16] << 4);
  }
}

}  // namespace

void pack_q4_0x8(const BlockQ4_0* rows, int64_t cols, BlockQ4_0x8* out) { pack_q4x8(rows, cols, out); }
void pack_q4_1x8(const BlockQ4_1* rows, int64_t cols, BlockQ4_1x8* out) { pack_q4x8(rows, cols, out); }

void dequantize_q4_0x8_row(const BlockQ4_0x8* group, int64_t cols, int r, float* out) {
  dequantize_nibble_x8_row(group, cols, r, out, [](int q) { return q - 8; });
}

Tensor repack_q4_0x8(const Tensor& t) {
  return repack_x8<BlockQ4_0, BlockQ4_0x8>(t, DType::Q4_0, DType::Q4_0_X8, [](const BlockQ4_0* rows, int64_t cols,
                                                                              BlockQ4_0x8* out) {
    pack_q4_0x8(rows, cols, out);
    return true;
  });
}

void unpack_q4_0x8_row(const BlockQ4_0x8* group, int64_t cols, int r, BlockQ4_0* out) {
  unpack_q4x8_row(group, cols, r, out);
}

std::vector<uint8_t> unpack_q4_0x8(const Tensor& t) { return unpack_x8<BlockQ4_0, BlockQ4_0x8>(t, unpack_q4_0x8_row); }

void dequantize_q4_1x8_row(const BlockQ4_1x8* group, int64_t cols, int r, float* out) {
  dequantize_nibble_x8_row(group, cols, r, out, [](int q) { return q; });
}

Tensor repack_q4_1x8(const Tensor& t) {
  return repack_x8<BlockQ4_1, BlockQ4_1x8>(t, DType::Q4_1, DType::Q4_1_X8, [](const BlockQ4_1* rows, int64_t cols,
                                                                              BlockQ4_1x8* out) {
    pack_q4_1x8(rows, cols, out);
    return true;
  });
}

std::vector<uint8_t> unpack_q4_1x8(const Tensor& t) {
  return unpack_x8<BlockQ4_1, BlockQ4_1x8>(t, unpack_q4x8_row<BlockQ4_1x8, BlockQ4_1>);
}

void gemv_q4_1x8_ref(int64_t cols, const BlockQ4_1x8* g, const BlockQ8_0* a, const int32_t* sums, float* out) {
  float acc[8] = {};
  for (int64_t b = 0; b < cols / 32; b++) {
    int32_t dot[8];
    nibble_x8_dots(g[b], a[b], [](int q) { return q; }, dot);
    const float da = f16_to_f32(a[b].d);
    for (int r = 0; r < 8; r++)
      acc[r] += da * (f16_to_f32(g[b].d[r]) * float(dot[r]) + f16_to_f32(g[b].m[r]) * float(sums[b]));
  }
  std::memcpy(out, acc, sizeof(acc));
}

void gemv_q4_0x8_ref(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a, const int32_t* sums, float* out) {
  float acc[8] = {};
  for (int64_t b = 0; b < cols / 32; b++) {
    int32_t dot[8];
    nibble_x8_dots(g[b], a[b], [](int q) { return q; }, dot);
    for (int r = 0; r < 8; r++)
      acc[r] += f16_to_f32(g[b].d[r]) * f16_to_f32(a[b].d) * float(dot[r] - 8 * sums[b]);
  }
  std::memcpy(out, acc, sizeof(acc));
}

#if defined(__x86_64__)
namespace {

template <class G>
__attribute__((target("avx2,fma,f16c"))) void gemv_q4x8_avx2(int64_t cols, const G* g, const BlockQ8_0* a,
                                                            const int32_t* sums, float* out) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / 32; b++) {
    simd_avx2::prefetch_ahead<sizeof(G)>(g + b);
    // Eight maddubs of ≤ 2·15·127 each sum to at most 30480: int16 holds them.
    __m256i s16 = _mm256_setzero_si256();
    for (int v = 0; v < 4; v++) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qs + 32 * v));
      int32_t ylo, yhi;
      std::memcpy(&ylo, a[b].qs + 4 * v, 4);
      std::memcpy(&yhi, a[b].qs + 4 * (v + 4), 4);
      s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(_mm256_and_si256(q, low), _mm256_set1_epi32(ylo)));
      s16 = _mm256_add_epi16(
          s16, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), low), _mm256_set1_epi32(yhi)));
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[b].d)));
    acc = simd_avx2::fma_unsigned_block<G, 8>(g[b], d, a[b].d, sums[b], _mm256_madd_epi16(s16, ones), acc);
  }
  _mm256_storeu_ps(out, acc);
}

template <class G>
__attribute__((target("avx2,fma,f16c"))) void gemm4_q4x8_avx2(int64_t cols, const G* g, const BlockQ8_0* a,
                                                             const int32_t* sums, int64_t stride, float* out,
                                                             int64_t out_stride) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < cols / 32; b++) {
    __m256i s16[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    // Unrolled by 2, not fully: the full unroll schedules every product first and spills the accumulators.
#pragma GCC unroll 2
    for (int v = 0; v < 4; v++) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qs + 32 * v));
      const __m256i lo = _mm256_and_si256(q, low), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
      for (int t = 0; t < 4; t++) {
        const BlockQ8_0& x = a[t * stride + b];
        int32_t ylo, yhi;
        std::memcpy(&ylo, x.qs + 4 * v, 4);
        std::memcpy(&yhi, x.qs + 4 * (v + 4), 4);
        s16[t] = _mm256_add_epi16(s16[t], _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_set1_epi32(ylo)),
                                                           _mm256_maddubs_epi16(hi, _mm256_set1_epi32(yhi))));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[b].d)));
    for (int t = 0; t < 4; t++)
      acc[t] = simd_avx2::fma_unsigned_block<G, 8>(g[b], d, a[t * stride + b].d, sums[t * stride + b],
                                                   _mm256_madd_epi16(s16[t], ones), acc[t]);
  }
  for (int t = 0; t < 4; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

}  // namespace
#endif  // defined(__x86_64__)

X8Kernels q4_0x8_kernels() {
#if defined(__x86_64__)
  return with_gemm4x2(
      x8_kernels_with_vnni<BlockQ4_0x8, BlockQ8_0, gemv_q4_0x8_ref, gemv_q4x8_avx2<BlockQ4_0x8>,
                           gemm4_q4x8_avx2<BlockQ4_0x8>,
                           simd_avxvnni::gemm4_q4_0x8, simd_avx512vnni::gemm4_q4_0x8, simd_vnni_emulated::gemm4_q4_0x8,
                           simd_avxvnni::gemmn_q4_0x8, simd_avx512vnni::gemmn_q4_0x8,
                           simd_vnni_emulated::gemmn_q4_0x8>(),
      x8_gemm4<BlockQ4_0x8, BlockQ8_0, simd_avx512vnni::gemm4x2_q4_0x8>);
#else
  return x8_reference_kernels<BlockQ4_0x8, BlockQ8_0, gemv_q4_0x8_ref>();
#endif
}

void gemm4_q4_0x8(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                  float* out, int64_t out_stride) {
  q4_0x8_kernels().gemm4(cols, g, a, sums, stride, out, out_stride);
}

void gemv_q4_0x8(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a, const int32_t* sums, float* out) {
  q4_0x8_kernels().gemv(cols, g, a, sums, out);
}

X8Kernels q4_1x8_kernels() {
  using G = BlockQ4_1x8;
  using A = BlockQ8_0;
#if defined(__x86_64__)
  if (qdot_simd_active())
    return with_gemm4x2({x8_gemv<G, A, gemv_q4x8_avx2<G>>, x8_gemm4<G, A, gemm4_q4x8_avx2<G>>},
                        x8_gemm4<G, A, simd_avx512vnni::gemm4x2_q4_1x8>);
#endif
  return x8_reference_kernels<G, A, gemv_q4_1x8_ref>();
}

void gemv_q4_1x8(int64_t cols, const BlockQ4_1x8* g, const BlockQ8_0* a, const int32_t* sums, float* out) {
  q4_1x8_kernels().gemv(cols, g, a, sums, out);
}

void gemm4_q4_1x8(int64_t cols, const BlockQ4_1x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                  float* out, int64_t out_stride) {
  q4_1x8_kernels().gemm4(cols, g, a, sums, stride, out, out_stride);
}

}  // namespace lmpress
