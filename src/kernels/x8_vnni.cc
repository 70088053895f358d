#if defined(__x86_64__)  // x86 only: on other architectures this file is empty
#include "kernels/x8_vnni.h"

#include <immintrin.h>

#include <cstring>

#include "core/cpu_isa.h"
#include "kernels/avx2_helpers.h"
#include "kernels/q4_kx8_avx2.h"
#include "kernels/qdot.h"

namespace lmpress {

namespace simd_avxvnni {

bool available() { return cpu_isa().avx_vnni; }

#define LMPRESS_VNNI_TARGET "avx2,fma,f16c,avxvnni"
#define LMPRESS_DPBUSD _mm256_dpbusd_avx_epi32
#include "kernels/x8_vnni_kernels.inc"
#undef LMPRESS_VNNI_TARGET
#undef LMPRESS_DPBUSD

}  // namespace simd_avxvnni

namespace simd_avx512vnni {

bool available() { return cpu_isa().avx512_vnni; }

#define LMPRESS_VNNI_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512vnni"
#define LMPRESS_DPBUSD _mm256_dpbusd_epi32
#include "kernels/x8_vnni_kernels.inc"
#undef LMPRESS_VNNI_TARGET
#undef LMPRESS_DPBUSD

// GCC 12's 512-bit intrinsics pass an uninitialized "undefined" operand to
// their masked builtins, which -Wmaybe-uninitialized reports in every caller.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

#define LMPRESS_AVX512_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"

// Two groups' 8-byte row vectors (8 rows each) widened to 16 int32 lanes.
__attribute__((target(LMPRESS_AVX512_TARGET))) inline __m512i rows_u8x2(const uint8_t* p0, const uint8_t* p1) {
  return _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p0)),
                                                 _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p1))));
}

// 32 bytes of each of two groups, the first group's in the low half.
__attribute__((target(LMPRESS_AVX512_TARGET))) inline __m512i bytes_x2(const void* p0, const void* p1) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(static_cast<const __m256i*>(p0))),
                            _mm256_loadu_si256(static_cast<const __m256i*>(p1)), 1);
}

// Two groups' 8 f16 values as 16 floats.
__attribute__((target(LMPRESS_AVX512_TARGET))) inline __m512 halves_x2(const uint16_t* p0, const uint16_t* p1) {
  return _mm512_cvtph_ps(_mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p0))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1)), 1));
}

}  // namespace

// gemmt_q4_kx8<4> on two groups at once in 512-bit registers: each activation
// broadcast and each vpdpbusd serve 16 rows instead of 8. Per lane the same
// integer dots and the same float operations (mul, fmadd, fnmadd) as the
// 8-row kernels and gemv, so each row is theirs bit for bit.
__attribute__((target(LMPRESS_AVX512_TARGET))) void gemm4x2_q4_kx8(int64_t cols, const BlockQ4_Kx8* g,
                                                                  const BlockQ8_K* a, int64_t stride, float* out,
                                                                  int64_t out_stride) {
  constexpr int T = 4;
  const int64_t nb = cols / QK_K;
  const BlockQ4_Kx8* g1 = g + nb;  // the next group
  const __m512i low = _mm512_set1_epi8(0x0F);
  __m512 acc[T];
  for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const BlockQ4_Kx8 &w0 = g[b], &w1 = g1[b];
    __m512i dot[T];
    for (int t = 0; t < T; t++) dot[t] = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
      __m512i s0[T], s1[T];
      for (int t = 0; t < T; t++) s0[t] = s1[t] = _mm512_setzero_si512();
      for (int v = 0; v < 8; v++) {
        const __m512i q = bytes_x2(w0.qs[c][v], w1.qs[c][v]);
        const __m512i lo = _mm512_and_si512(q, low), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low);
        for (int t = 0; t < T; t++) {
          const int8_t* y = a[t * stride + b].qs + 64 * c + 4 * v;
          s0[t] = _mm512_dpbusd_epi32(s0[t], lo, _mm512_set1_epi32(bytes4(y)));
          s1[t] = _mm512_dpbusd_epi32(s1[t], hi, _mm512_set1_epi32(bytes4(y + 32)));
        }
      }
      const __m512i sc0 = rows_u8x2(w0.sc[2 * c], w1.sc[2 * c]), sc1 = rows_u8x2(w0.sc[2 * c + 1], w1.sc[2 * c + 1]);
      for (int t = 0; t < T; t++)
        dot[t] = _mm512_add_epi32(dot[t], _mm512_add_epi32(_mm512_mullo_epi32(s0[t], sc0), _mm512_mullo_epi32(s1[t], sc1)));
    }
    const __m512 d = halves_x2(w0.d, w1.d), dmin = halves_x2(w0.dmin, w1.dmin);
    for (int t = 0; t < T; t++) {
      const BlockQ8_K& x = a[t * stride + b];
      __m512i mins = _mm512_setzero_si512();
      for (int j = 0; j < 8; j++)
        mins = _mm512_add_epi32(mins, _mm512_mullo_epi32(rows_u8x2(w0.m[j], w1.m[j]),
                                                         _mm512_set1_epi32(q4_kx8_avx2::sub_sum(x, j))));
      const __m512 ad = _mm512_set1_ps(x.d);
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, ad), _mm512_cvtepi32_ps(dot[t]), acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, ad), _mm512_cvtepi32_ps(mins), acc[t]);
    }
  }
  for (int t = 0; t < T; t++) _mm512_storeu_ps(out + t * out_stride, acc[t]);
}

namespace {

// Vector v (0..3) of a 32-value block of two groups as unsigned values: the
// low nibbles (values 4v + i) and the high ones (values 4(v + 4) + i); `extra`
// is what prepare() read once per block. Q4_0: value + 8.
// Q4_1 (G = BlockQ4_1x8): the nibbles as they are, its minimums in the epilogue.
template <class G, int Offset>
struct Q4Values {
  static constexpr int kOffset = Offset;
  __attribute__((target(LMPRESS_AVX512_TARGET))) static __m512i prepare(const G&, const G&) {
    return _mm512_setzero_si512();
  }
  __attribute__((target(LMPRESS_AVX512_TARGET))) static void get(const G& g0, const G& g1, __m512i, int v, __m512i& lo,
                                                                __m512i& hi) {
    const __m512i low = _mm512_set1_epi8(0x0F), q = bytes_x2(g0.qs + 32 * v, g1.qs + 32 * v);
    lo = _mm512_and_si512(q, low);
    hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low);
  }
};

// Q5_0: value + 16, the fifth bits from qh (prepare) shifted into place as q5_0x8.cc does. Q5_1 (G =
// BlockQ5_1x8): the same unsigned values, no offset, its minimums in the epilogue.
template <class G, int Offset>
struct Q5Values {
  static constexpr int kOffset = Offset;
  __attribute__((target(LMPRESS_AVX512_TARGET))) static __m512i prepare(const G& g0, const G& g1) {
    return bytes_x2(g0.qh, g1.qh);
  }
  __attribute__((target(LMPRESS_AVX512_TARGET))) static void get(const G& g0, const G& g1, __m512i qh, int v,
                                                                __m512i& lo, __m512i& hi) {
    const __m512i low = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
    const __m512i q = bytes_x2(g0.qs + 32 * v, g1.qs + 32 * v);
    lo = _mm512_or_si512(_mm512_and_si512(q, low), _mm512_and_si512(_mm512_sll_epi16(qh, _mm_cvtsi32_si128(4 - v)), bit4));
    hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q, 4), low),
                         _mm512_and_si512(_mm512_srl_epi16(qh, _mm_cvtsi32_si128(v)), bit4));
  }
};

// The 8-row 4-token kernels of the 32-value layouts whose values are stored
// unsigned (value + V::kOffset, taken off through kOffset · Σ activations, or
// with minimums added through m · Σ activations) on
// two groups at once in 512-bit registers: one vpdpbusd per token and vector
// (AVX2 needs maddubs + madd), the same integer dots and float epilogue per
// lane as the 8-row kernels and gemv.
template <class Group, class V>
__attribute__((target(LMPRESS_AVX512_TARGET))) void gemm4x2_blocks32(int64_t cols, const Group* g, const BlockQ8_0* a,
                                                                    const int32_t* sums, int64_t stride, float* out,
                                                                    int64_t out_stride) {
  constexpr int T = 4;
  const int64_t nb = cols / 32;
  const Group* g1 = g + nb;  // the next group
  __m512 acc[T];
  for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    __m512i d[T];
    for (int t = 0; t < T; t++) d[t] = _mm512_setzero_si512();
    const __m512i extra = V::prepare(g[b], g1[b]);
    for (int v = 0; v < 4; v++) {
      __m512i lo, hi;
      V::get(g[b], g1[b], extra, v, lo, hi);
      for (int t = 0; t < T; t++) {
        const int8_t* y = a[t * stride + b].qs;
        d[t] = _mm512_dpbusd_epi32(d[t], lo, _mm512_set1_epi32(bytes4(y + 4 * v)));
        d[t] = _mm512_dpbusd_epi32(d[t], hi, _mm512_set1_epi32(bytes4(y + 4 * (v + 4))));
      }
    }
    const __m512 dw = halves_x2(g[b].d, g1[b].d);
    for (int t = 0; t < T; t++) {
      const float da = simd_avx2::h2f(a[t * stride + b].d);
      if constexpr (kHasMinimums<Group>) {  // w = d·q + m: the minimums times da·Σa
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(da)), _mm512_cvtepi32_ps(d[t]), acc[t]);
        acc[t] = _mm512_fmadd_ps(halves_x2(g[b].m, g1[b].m), _mm512_set1_ps(da * float(sums[t * stride + b])), acc[t]);
      } else {
        const __m512i dot = _mm512_sub_epi32(d[t], _mm512_set1_epi32(V::kOffset * sums[t * stride + b]));
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(da)), _mm512_cvtepi32_ps(dot), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; t++) _mm512_storeu_ps(out + t * out_stride, acc[t]);
}

// gemmt_panel_x8<4, kHalves> on two consecutive panels in 512-bit registers:
// each activation broadcast and each vpdpbusd serve 16 rows, and a token's
// chain waits half as often on the instruction's latency. Per lane the same
// integer sums and float operations as the 8-row kernel, so each row is its
// bit for bit.
template <bool kHalves>
__attribute__((target(LMPRESS_AVX512_TARGET))) void gemm4x2_panels(int64_t cols, const BlockPanelx8* g,
                                                                  const BlockQ8_0* a, int64_t stride, float* out,
                                                                  int64_t out_stride) {
  constexpr int T = 4, kSums = kHalves ? 2 : 1;
  const int64_t nb = cols / 32;
  const BlockPanelx8* g1 = g + nb;  // the next panel
  __m512 acc[T];
  for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const BlockPanelx8 &p0 = g[b], &p1 = g1[b];
    __m512i d[kSums][T];
    for (int h = 0; h < kSums; h++)
      for (int t = 0; t < T; t++) d[h][t] = _mm512_setzero_si512();
    for (int v = 0; v < 8; v++) {
      const int h = kHalves ? v / 4 : 0;
      const __m512i w = bytes_x2(p0.qs[v], p1.qs[v]);
      for (int t = 0; t < T; t++)
        d[h][t] = _mm512_dpbusd_epi32(d[h][t], _mm512_set1_epi32(bytes4(a[t * stride + b].qs + 4 * v)), w);
    }
    // kHalves: a sum per half under its own scale; else one per block, both halves' 128·Σ off it, under d[0].
    for (int h = 0; h < kSums; h++) {
      const __m512i bias = kHalves ? bytes_x2(p0.bias[h], p1.bias[h])
                                   : _mm512_add_epi32(bytes_x2(p0.bias[0], p1.bias[0]), bytes_x2(p0.bias[1], p1.bias[1]));
      const __m512 dw = _mm512_castsi512_ps(bytes_x2(p0.d[h], p1.d[h]));
      for (int t = 0; t < T; t++)
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(simd_avx2::h2f(a[t * stride + b].d))),
                                 _mm512_cvtepi32_ps(_mm512_sub_epi32(d[h][t], bias)), acc[t]);
    }
  }
  for (int t = 0; t < T; t++) _mm512_storeu_ps(out + t * out_stride, acc[t]);
}

}  // namespace

void gemm4x2_q4_0x8(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                    float* out, int64_t out_stride) {
  gemm4x2_blocks32<BlockQ4_0x8, Q4Values<BlockQ4_0x8, 8>>(cols, g, a, sums, stride, out, out_stride);
}

void gemm4x2_q4_1x8(int64_t cols, const BlockQ4_1x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                    float* out, int64_t out_stride) {
  gemm4x2_blocks32<BlockQ4_1x8, Q4Values<BlockQ4_1x8, 0>>(cols, g, a, sums, stride, out, out_stride);
}

void gemm4x2_q5_0x8(int64_t cols, const BlockQ5_0x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                    float* out, int64_t out_stride) {
  gemm4x2_blocks32<BlockQ5_0x8, Q5Values<BlockQ5_0x8, 16>>(cols, g, a, sums, stride, out, out_stride);
}

void gemm4x2_q5_1x8(int64_t cols, const BlockQ5_1x8* g, const BlockQ8_0* a, const int32_t* sums, int64_t stride,
                    float* out, int64_t out_stride) {
  gemm4x2_blocks32<BlockQ5_1x8, Q5Values<BlockQ5_1x8, 0>>(cols, g, a, sums, stride, out, out_stride);
}

void gemm4x2_panel_x8(int64_t cols, const BlockPanelx8* g, const BlockQ8_0* a_u8, int64_t stride, float* out,
                      int64_t out_stride) {
  gemm4x2_panels<false>(cols, g, a_u8, stride, out, out_stride);
}

void gemm4x2_panel16_x8(int64_t cols, const BlockPanelx8* g, const BlockQ8_0* a_u8, int64_t stride, float* out,
                        int64_t out_stride) {
  gemm4x2_panels<true>(cols, g, a_u8, stride, out, out_stride);
}

#undef LMPRESS_AVX512_TARGET
#pragma GCC diagnostic pop

}  // namespace simd_avx512vnni

namespace simd_avx2_small {

#define LMPRESS_VNNI_TARGET "avx2,fma,f16c"
#define LMPRESS_DPBUSD simd_avx2::dpbusd_small
#include "kernels/x8_vnni_kernels.inc"
#undef LMPRESS_VNNI_TARGET
#undef LMPRESS_DPBUSD

}  // namespace simd_avx2_small

namespace simd_vnni_emulated {

#define LMPRESS_VNNI_TARGET "avx2,fma,f16c"
#define LMPRESS_DPBUSD simd_avx2::dpbusd_emulated
#include "kernels/x8_vnni_kernels.inc"
#undef LMPRESS_VNNI_TARGET
#undef LMPRESS_DPBUSD

}  // namespace simd_vnni_emulated

}  // namespace lmpress
#endif  // defined(__x86_64__)
