#include "kernels/q5_0x8.h"

#include <cstring>

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

// Weight k (0..31) of a Q5_0 / Q5_1 block as its unsigned 5-bit value (Q5_0: value + 16).
template <class Row>
uint8_t value5(const Row& b, int k) {
  const uint8_t nib = k < 16 ? b.qs[k] & 0x0F : b.qs[k - 16] >> 4;
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  return uint8_t(nib | ((qh >> k) & 1u) << 4);
}

// Row r's weights 4v + i (low) and 4(v + 4) + i (high) of group block g, as
// unsigned 5-bit values.
template <class G>
uint8_t low5(const G& g, int r, int v, int i) {
  return uint8_t((g.qs[32 * v + 4 * r + i] & 0x0F) | ((g.qh[4 * r + i] >> v) & 1) << 4);
}
template <class G>
uint8_t high5(const G& g, int r, int v, int i) {
  return uint8_t((g.qs[32 * v + 4 * r + i] >> 4) | ((g.qh[4 * r + i] >> (4 + v)) & 1) << 4);
}

template <class G, class Row>
void unpack_q5x8_row(const G* group, int64_t cols, int r, Row* out) {
  for (int64_t b = 0; b < cols / 32; b++) {
    const G& g = group[b];
    uint8_t w[32];
    for (int v = 0; v < 4; v++)
      for (int i = 0; i < 4; i++) w[4 * v + i] = low5(g, r, v, i), w[4 * (v + 4) + i] = high5(g, r, v, i);
    Row& o = out[b];
    o.d = g.d[r];
    if constexpr (kHasMinimums<G>) o.m = g.m[r];
    uint32_t qh = 0;
    for (int k = 0; k < 32; k++) qh |= uint32_t(w[k] >> 4) << k;
    std::memcpy(o.qh, &qh, 4);
    for (int k = 0; k < 16; k++) o.qs[k] = uint8_t((w[k] & 0x0F) | (w[k + 16] & 0x0F) << 4);
  }
}

template <class Row, class G>
void pack_q5x8(const Row* rows, int64_t cols, G* out) {
  const int64_t nb = cols / 32;
  for (int64_t b = 0; b < nb; b++) {
    G& o = out[b];
    std::memset(o.qh, 0, sizeof(o.qh));
    for (int r = 0; r < 8; r++) {
      const Row& s = rows[r * nb + b];
      o.d[r] = s.d;
      if constexpr (kHasMinimums<G>) o.m[r] = s.m;
      for (int v = 0; v < 4; v++)
        for (int i = 0; i < 4; i++) {
          const uint8_t lo = value5(s, 4 * v + i), hi = value5(s, 4 * (v + 4) + i);
          o.qs[32 * v + 4 * r + i] = uint8_t((lo & 0x0F) | (hi & 0x0F) << 4);
          o.qh[4 * r + i] |= uint8_t((lo >> 4) << v | (hi >> 4) << (4 + v));
        }
    }
  }
}

template <class G>
void dequantize_q5x8_row(const G* group, int64_t cols, int r, float* out) {
  for (int64_t b = 0; b < cols / 32; b++, out += 32) {
    const G& g = group[b];
    const float d = f16_to_f32(g.d[r]);
    // Q5_1: d·q + m; Q5_0: d·(q − 16), as ggml dequantizes them.
    const auto value = [&](uint8_t q) {
      if constexpr (kHasMinimums<G>) return float(q) * d + f16_to_f32(g.m[r]);
      else return float(int(q) - 16) * d;
    };
    for (int v = 0; v < 4; v++)
      for (int i = 0; i < 4; i++) {
        out[4 * v + i] = value(low5(g, r, v, i));
        out[4 * (v + 4) + i] = value(high5(g, r, v, i));
      }
  }
}

// The scalar reference: per block, the 8 rows' integer dots, then Q5_0's d·da·(dot − 16·Σa) or Q5_1's
// da·(d·dot + m·Σa).
template <class G>
void gemv_q5x8_ref(int64_t cols, const G* g, const BlockQ8_0* a, const int32_t* sums, float* out) {
  float acc[8] = {};
  for (int64_t b = 0; b < cols / 32; b++) {
    int32_t dot[8] = {};
    for (int v = 0; v < 4; v++)
      for (int r = 0; r < 8; r++)
        for (int i = 0; i < 4; i++)
          dot[r] += int32_t(low5(g[b], r, v, i)) * a[b].qs[4 * v + i] +
                    int32_t(high5(g[b], r, v, i)) * a[b].qs[4 * (v + 4) + i];
    const float da = f16_to_f32(a[b].d);
    for (int r = 0; r < 8; r++) {
      if constexpr (kHasMinimums<G>)
        acc[r] += da * (f16_to_f32(g[b].d[r]) * float(dot[r]) + f16_to_f32(g[b].m[r]) * float(sums[b]));
      else
        acc[r] += f16_to_f32(g[b].d[r]) * da * float(dot[r] - 16 * sums[b]);
    }
  }
  std::memcpy(out, acc, sizeof(acc));
}

}  // namespace

void pack_q5_0x8(const BlockQ5_0* rows, int64_t cols, BlockQ5_0x8* out) { pack_q5x8(rows, cols, out); }
void pack_q5_1x8(const BlockQ5_1* rows, int64_t cols, BlockQ5_1x8* out) { pack_q5x8(rows, cols, out); }

void dequantize_q5_0x8_row(const BlockQ5_0x8* group, int64_t cols, int r, float* out) {
  dequantize_q5x8_row(group, cols, r, out);
}
void dequantize_q5_1x8_row(const BlockQ5_1x8* group, int64_t cols, int r, float* out) {
  dequantize_q5x8_row(group, cols, r, out);
}

Tensor repack_q5_0x8(const Tensor& t) {
  return repack_x8<BlockQ5_0, BlockQ5_0x8>(t, DType::Q5_0, DType::Q5_0_X8, [](const BlockQ5_0* rows, int64_t cols,
                                                                              BlockQ5_0x8* out) {
    pack_q5_0x8(rows, cols, out);
    return true;
  });
}
Tensor repack_q5_1x8(const Tensor& t) {
  return repack_x8<BlockQ5_1, BlockQ5_1x8>(t, DType::Q5_1, DType::Q5_1_X8, [](const BlockQ5_1* rows, int64_t cols,
                                                                              BlockQ5_1x8* out) {
    pack_q5_1x8(rows, cols, out);
    return true;
  });
}

std::vector<uint8_t> unpack_q5_0x8(const Tensor& t) {
  return unpack_x8<BlockQ5_0, BlockQ5_0x8>(t, unpack_q5x8_row<BlockQ5_0x8, BlockQ5_0>);
}
std::vector<uint8_t> unpack_q5_1x8(const Tensor& t) {
  return unpack_x8<BlockQ5_1, BlockQ5_1x8>(t, unpack_q5x8_row<BlockQ5_1x8, BlockQ5_1>);
}

void gemv_q5_0x8_ref(int64_t cols, const BlockQ5_0x8* g, const BlockQ8_0* a, const int32_t* sums, float* out) {
  gemv_q5x8_ref(cols, g, a, sums, out);
}
void gemv_q5_1x8_ref(int64_t cols, const BlockQ5_1x8* g, const BlockQ8_0* a, const int32_t* sums, float* out) {
  gemv_q5x8_ref(cols, g, a, sums, out);
}

#if defined(__x86_64__)
namespace {

// The unsigned 5-bit values of nibble vector v: low (weights 4v + i) and high
// (weights 4(v + 4) + i) halves, the fifth bit shifted from qh into bit 4
// (within each byte: a 16-bit shift by at most 4 never brings another byte's
// bit to bit 4).
struct Values5 {
  __m256i lo, hi;
};
template <class G>
__attribute__((target("avx2"))) inline Values5 values5(const G& g, __m256i qh, int v) {
  const __m256i low = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.qs + 32 * v));
  const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, low),
                                     _mm256_and_si256(_mm256_sll_epi16(qh, _mm_cvtsi32_si128(4 - v)), bit4));
  const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low),
                                     _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(v)), bit4));
  return {lo, hi};
}

// One vector's products with a token's activations: 2 maddubs of ≤ 2·31·127
// each, 15748 at most, so two vectors' worth still fit int16.
__attribute__((target("avx2"))) inline __m256i dot_values5(Values5 x, const int8_t* y, int v) {
  int32_t ylo, yhi;
  std::memcpy(&ylo, y + 4 * v, 4);
  std::memcpy(&yhi, y + 4 * (v + 4), 4);
  return _mm256_add_epi16(_mm256_maddubs_epi16(x.lo, _mm256_set1_epi32(ylo)),
                          _mm256_maddubs_epi16(x.hi, _mm256_set1_epi32(yhi)));
}

template <class G>
__attribute__((target("avx2,fma,f16c"))) void gemv_q5x8_avx2(int64_t cols, const G* g, const BlockQ8_0* a,
                                                            const int32_t* sums, float* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / 32; b++) {
    simd_avx2::prefetch_ahead<sizeof(G)>(g + b);
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qh));
    const __m256i s01 = _mm256_add_epi16(dot_values5(values5(g[b], qh, 0), a[b].qs, 0),
                                         dot_values5(values5(g[b], qh, 1), a[b].qs, 1));
    const __m256i s23 = _mm256_add_epi16(dot_values5(values5(g[b], qh, 2), a[b].qs, 2),
                                         dot_values5(values5(g[b], qh, 3), a[b].qs, 3));
    const __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(s01, ones), _mm256_madd_epi16(s23, ones));
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[b].d)));
    acc = simd_avx2::fma_unsigned_block<G, 16>(g[b], d, a[b].d, sums[b], dot, acc);
  }
  _mm256_storeu_ps(out, acc);
}

template <class G>
__attribute__((target("avx2,fma,f16c"))) void gemm4_q5x8_avx2(int64_t cols, const G* g, const BlockQ8_0* a,
                                                             const int32_t* sums, int64_t stride, float* out,
                                                             int64_t out_stride) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < cols / 32; b++) {
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qh));
    __m256i s32[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int v = 0; v < 4; v++) {
      const Values5 x = values5(g[b], qh, v);
      for (int t = 0; t < 4; t++)
        s32[t] = _mm256_add_epi32(s32[t], _mm256_madd_epi16(dot_values5(x, a[t * stride + b].qs, v), ones));
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[b].d)));
    for (int t = 0; t < 4; t++)
      acc[t] = simd_avx2::fma_unsigned_block<G, 16>(g[b], d, a[t * stride + b].d, sums[t * stride + b], s32[t], acc[t]);
  }
  for (int t = 0; t < 4; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

}  // namespace
#endif  // defined(__x86_64__)

X8Kernels q5_0x8_kernels() {
  using G = BlockQ5_0x8;
  using A = BlockQ8_0;
#if defined(__x86_64__)
  if (qdot_simd_active())
    return with_gemm4x2({x8_gemv<G, A, gemv_q5x8_avx2<G>>, x8_gemm4<G, A, gemm4_q5x8_avx2<G>>},
                        x8_gemm4<G, A, simd_avx512vnni::gemm4x2_q5_0x8>);
#endif
  return x8_reference_kernels<G, A, gemv_q5_0x8_ref>();
}

X8Kernels q5_1x8_kernels() {
  using G = BlockQ5_1x8;
  using A = BlockQ8_0;
#if defined(__x86_64__)
  if (qdot_simd_active())
    return with_gemm4x2({x8_gemv<G, A, gemv_q5x8_avx2<G>>, x8_gemm4<G, A, gemm4_q5x8_avx2<G>>},
                        x8_gemm4<G, A, simd_avx512vnni::gemm4x2_q5_1x8>);
#endif
  return x8_reference_kernels<G, A, gemv_q5_1x8_ref>();
}

void gemv_q5_1x8(int64_t cols, const BlockQ5_1x8* g, const BlockQ8_0* a, const int32_t* sums, float* out) {
  q5_1x8_kernels().gemv(cols, g, a, sums, out);
}

void gemm4_q5_1x8(int64_t cols, const BlockQ5_1x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                  float* out, int64_t out_stride) {
  q5_1x8_kernels().gemm4(cols, g, a, sums, stride, out, out_stride);
}

void gemv_q5_0x8(int64_t cols, const BlockQ5_0x8* g, const BlockQ8_0* a, const int32_t* sums, float* out) {
  q5_0x8_kernels().gemv(cols, g, a, sums, out);
}

void gemm4_q5_0x8(int64_t cols, const BlockQ5_0x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                  float* out, int64_t out_stride) {
  q5_0x8_kernels().gemm4(cols, g, a, sums, stride, out, out_stride);
}

}  // namespace lmpress
