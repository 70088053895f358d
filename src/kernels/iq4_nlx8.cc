#include "kernels/iq4_nlx8.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <optional>

#include "core/fp16.h"
#include "kernels/int_blocks.h"
#include "kernels/interleave.h"
#include "kernels/qdot.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/avx2_helpers.h"
#endif

namespace lmpress {

static_assert(sizeof(BlockIQ4_NL) == sizeof(BlockQ4_0) && offsetof(BlockIQ4_NL, qs) == offsetof(BlockQ4_0, qs),
              "IQ4_NL and Q4_0 blocks share a layout");

Tensor repack_iq4_nlx8(const Tensor& t) {
  return repack_x8<BlockQ4_0, BlockQ4_0x8>(t, DType::IQ4_NL, DType::IQ4_NL_X8,
                                           [](const BlockQ4_0* rows, int64_t cols, BlockQ4_0x8* out) {
                                             pack_q4_0x8(rows, cols, out);
                                             return true;
                                           });
}

std::vector<uint8_t> unpack_iq4_nlx8(const Tensor& t) { return unpack_q4_0x8(t); }

void decode_iq4_nlx8_chunks(const BlockQ4_0x8* group, int64_t cols, ChunkQ8* out) {
  const int64_t nb = cols / 32;
  for (int r = 0; r < 8; r++)
    for (int64_t b = 0; b < nb; b++) {
      ChunkQ8& c = out[r * nb + b];
      c.d[0] = c.d[1] = f16_to_f32(group[b].d[r]);
      for (int v = 0; v < 4; v++)
        for (int i = 0; i < 4; i++) {
          const uint8_t q = group[b].qs[32 * v + 4 * r + i];
          c.qs[4 * v + i] = kIQ4NLValues[q & 0x0F];
          c.qs[4 * (v + 4) + i] = kIQ4NLValues[q >> 4];
        }
    }
}

namespace {

template <const int8_t* L>
void gemv_ref(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a, float* out) {
  float acc[8] = {};
  for (int64_t b = 0; b < cols / 32; b++) {
    int32_t dot[8];
    nibble_x8_dots(g[b], a[b], [](int q) { return L[q]; }, dot);
    for (int r = 0; r < 8; r++) acc[r] += f16_to_f32(g[b].d[r]) * f16_to_f32(a[b].d) * float(dot[r]);
  }
  std::memcpy(out, acc, sizeof(acc));
}

}  // namespace

void dequantize_iq4_nlx8_row(const BlockQ4_0x8* group, int64_t cols, int r, float* out) {
  dequantize_nibble_x8_row(group, cols, r, out, [](int q) { return kIQ4NLValues[q]; });
}
void gemv_iq4_nlx8_ref(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a, float* out) {
  gemv_ref<kIQ4NLValues>(cols, g, a, out);
}

namespace {

// An MXFP4 block's scale 2^(e − 128) (ggml's half scale, E2M1 levels doubled) as f16, when f16 holds it exactly
// (e in [104, 143]: 2^-24 .. 2^15).
std::optional<uint16_t> mxfp4_scale_f16(uint8_t e) {
  if (e < 104 || e > 143) return std::nullopt;
  return f32_to_f16(e8m0_to_f32_half(e));
}

}  // namespace

Tensor repack_mxfp4x8(const Tensor& t) {
  const auto* blocks = reinterpret_cast<const BlockMXFP4*>(t.data);
  for (int64_t i = 0; i < t.rows() * (t.cols() / 32); i++)
    if (!mxfp4_scale_f16(blocks[i].e)) return t;  // a scale f16 cannot hold: kept as MXFP4
  return repack_x8<BlockMXFP4, BlockQ4_0x8>(t, DType::MXFP4, DType::MXFP4_X8,
                                            [](const BlockMXFP4* rows, int64_t cols, BlockQ4_0x8* out) {
                                              const int64_t nb = cols / 32;
                                              std::vector<BlockQ4_0> q(size_t(8 * nb));
                                              for (size_t i = 0; i < q.size(); i++) {
                                                q[i].d = *mxfp4_scale_f16(rows[i].e);
                                                std::memcpy(q[i].qs, rows[i].qs, sizeof q[i].qs);
                                              }
                                              pack_q4_0x8(q.data(), cols, out);
                                              return true;
                                            });
}

std::vector<uint8_t> unpack_mxfp4x8(const Tensor& t) {
  return unpack_x8<BlockMXFP4, BlockQ4_0x8>(t, [](const BlockQ4_0x8* group, int64_t cols, int r, BlockMXFP4* out) {
    std::vector<BlockQ4_0> q(size_t(cols / 32));
    unpack_q4_0x8_row(group, cols, r, q.data());
    for (size_t b = 0; b < q.size(); b++) {
      int exp = 0;
      std::frexp(f16_to_f32(q[b].d), &exp);  // d = 2^(exp − 1) = 2^(e − 128)
      out[b].e = uint8_t(exp + 127);
      std::memcpy(out[b].qs, q[b].qs, sizeof out[b].qs);
    }
  });
}

void dequantize_mxfp4x8_row(const BlockQ4_0x8* group, int64_t cols, int r, float* out) {
  dequantize_nibble_x8_row(group, cols, r, out, [](int q) { return kFp4Values[q]; });
}
void gemv_mxfp4x8_ref(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a, float* out) {
  gemv_ref<kFp4Values>(cols, g, a, out);
}

#if defined(__x86_64__)
namespace {

// T = 1..4 tokens in one pass over the group: per 32-byte load the 8 rows'
// levels of 4 weights (low nibbles) and of 4 more (high), |w| once for all
// tokens, each token's 4 activation bytes broadcast and given w's sign. A
// product pair is at most 2·127·128 in magnitude, so maddubs never saturates
// and every encoding sums the same integers. DOT(acc, |w|, signed y) adds the
// 4-byte dot per 32-bit lane.
#define LMPRESS_IQ4_NLX8_GEMMT(NAME, TARGET, DOT)                                                                  \
  template <int T, const int8_t* L>                                                                                \
  __attribute__((target(TARGET))) void NAME(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a,                 \
                                            int64_t stride, float* out, int64_t out_stride) {                      \
    const __m256i low = _mm256_set1_epi8(0x0F);                                                                    \
    const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(L));                                  \
    const __m256i table = _mm256_set_m128i(levels, levels);                                                        \
    [[maybe_unused]] const __m256i ones = _mm256_set1_epi16(1);                                                    \
    __m256 acc[T];                                                                                                 \
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();                                                      \
    for (int64_t b = 0; b < cols / 32; b++) {                                                                      \
      if (T == 1) simd_avx2::prefetch_ahead<sizeof(BlockQ4_0x8)>(g + b);                                           \
      __m256i d[T];                                                                                                \
      for (int t = 0; t < T; t++) d[t] = _mm256_setzero_si256();                                                   \
      for (int v = 0; v < 4; v++) {                                                                                \
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qs + 32 * v));                  \
        const __m256i wl = _mm256_shuffle_epi8(table, _mm256_and_si256(q, low));                                   \
        const __m256i wh = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), low));             \
        const __m256i al = _mm256_sign_epi8(wl, wl), ah = _mm256_sign_epi8(wh, wh);                                 \
        for (int t = 0; t < T; t++) {                                                                              \
          const BlockQ8_0& x = a[t * stride + b];                                                                  \
          int32_t ylo, yhi;                                                                                        \
          std::memcpy(&ylo, x.qs + 4 * v, 4);                                                                      \
          std::memcpy(&yhi, x.qs + 4 * (v + 4), 4);                                                                \
          d[t] = DOT(d[t], al, _mm256_sign_epi8(_mm256_set1_epi32(ylo), wl));                                      \
          d[t] = DOT(d[t], ah, _mm256_sign_epi8(_mm256_set1_epi32(yhi), wh));                                      \
        }                                                                                                          \
      }                                                                                                            \
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[b].d)));               \
      for (int t = 0; t < T; t++) acc[t] = simd_avx2::fma_scaled(dw, a[t * stride + b].d, d[t], acc[t]);          \
    }                                                                                                              \
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);                                    \
  }

// The VNNI kernels for 2..4 tokens: each token's activations once per block
// as unsigned bytes (value + 128), so a weight vector meets every token with
// one vpdpbusd and no sign operations; 128·Σw per row, summed by vpdpbusd
// against ones, comes off after. The same integers as the signed form.
#define LMPRESS_IQ4_NLX8_GEMMT_U8(NAME, SIGNED, TARGET, DPBUSD)                                                    \
  template <int T, const int8_t* L>                                                                                \
  __attribute__((target(TARGET))) void NAME(int64_t cols, const BlockQ4_0x8* g, const BlockQ8_0* a,                 \
                                            int64_t stride, float* out, int64_t out_stride) {                      \
    if (T == 1) return SIGNED<1, L>(cols, g, a, stride, out, out_stride);                                          \
    const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi8(1), flip = _mm256_set1_epi8(char(0x80));   \
    const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(L));                                  \
    const __m256i table = _mm256_set_m128i(levels, levels);                                                        \
    alignas(32) int32_t yu[T][8];                                                                                  \
    __m256 acc[T];                                                                                                 \
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();                                                      \
    for (int64_t b = 0; b < cols / 32; b++) {                                                                      \
      __m256i d[T];                                                                                                \
      for (int t = 0; t < T; t++) {                                                                                \
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t * stride + b].qs));              \
        _mm256_store_si256(reinterpret_cast<__m256i*>(yu[t]), _mm256_xor_si256(y, flip));                          \
        d[t] = _mm256_setzero_si256();                                                                             \
      }                                                                                                            \
      __m256i wsum = _mm256_setzero_si256();                                                                       \
      for (int v = 0; v < 4; v++) {                                                                                \
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qs + 32 * v));                  \
        const __m256i wl = _mm256_shuffle_epi8(table, _mm256_and_si256(q, low));                                   \
        const __m256i wh = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), low));             \
        wsum = DPBUSD(DPBUSD(wsum, ones, wl), ones, wh);                                                           \
        for (int t = 0; t < T; t++) {                                                                              \
          d[t] = DPBUSD(d[t], _mm256_set1_epi32(yu[t][v]), wl);                                                    \
          d[t] = DPBUSD(d[t], _mm256_set1_epi32(yu[t][v + 4]), wh);                                                \
        }                                                                                                          \
      }                                                                                                            \
      const __m256i bias = _mm256_slli_epi32(wsum, 7);                                                             \
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[b].d)));               \
      for (int t = 0; t < T; t++)                                                                                  \
        acc[t] = simd_avx2::fma_scaled(dw, a[t * stride + b].d, _mm256_sub_epi32(d[t], bias), acc[t]);            \
    }                                                                                                              \
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);                                    \
  }

#define LMPRESS_DOT_AVX2(acc, x, y) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), ones))
#define LMPRESS_DOT_AVX512VNNI(acc, x, y) _mm256_dpbusd_epi32(acc, x, y)
#define LMPRESS_DOT_AVXVNNI(acc, x, y) _mm256_dpbusd_avx_epi32(acc, x, y)
#define LMPRESS_DOT_AVX512VNNI_RAW(acc, x, y) _mm256_dpbusd_epi32(acc, x, y)
#define LMPRESS_DOT_AVXVNNI_RAW(acc, x, y) _mm256_dpbusd_avx_epi32(acc, x, y)
LMPRESS_IQ4_NLX8_GEMMT(gemmt_avx2, "avx2,fma,f16c", LMPRESS_DOT_AVX2)
LMPRESS_IQ4_NLX8_GEMMT(gemmt_avx512vnni, "avx512vnni,avx512vl,avx2,fma,f16c", LMPRESS_DOT_AVX512VNNI)
LMPRESS_IQ4_NLX8_GEMMT(gemmt_avxvnni, "avxvnni,avx2,fma,f16c", LMPRESS_DOT_AVXVNNI)
LMPRESS_IQ4_NLX8_GEMMT_U8(gemmt_u8_avx512vnni, gemmt_avx512vnni, "avx512vnni,avx512vl,avx2,fma,f16c",
                          LMPRESS_DOT_AVX512VNNI_RAW)
LMPRESS_IQ4_NLX8_GEMMT_U8(gemmt_u8_avxvnni, gemmt_avxvnni, "avxvnni,avx2,fma,f16c", LMPRESS_DOT_AVXVNNI_RAW)
#undef LMPRESS_DOT_AVX512VNNI_RAW
#undef LMPRESS_DOT_AVXVNNI_RAW
#undef LMPRESS_IQ4_NLX8_GEMMT_U8
#undef LMPRESS_DOT_AVX2
#undef LMPRESS_DOT_AVX512VNNI
#undef LMPRESS_DOT_AVXVNNI
#undef LMPRESS_IQ4_NLX8_GEMMT

// The table's signatures over one encoding's T = 1..4 kernels.
#define LMPRESS_IQ4_NLX8_KERNELS(FN, L)                                                                            \
  X8Kernels{[](int64_t cols, const void* g, const void* a, const int32_t*, float* out) {                           \
              FN<1, L>(cols, static_cast<const BlockQ4_0x8*>(g), static_cast<const BlockQ8_0*>(a), 0, out, 8);    \
            },                                                                                                     \
            [](int64_t cols, const void* g, const void* a, const int32_t*, int64_t stride, float* out,             \
               int64_t out_stride) {                                                                               \
              FN<4, L>(cols, static_cast<const BlockQ4_0x8*>(g), static_cast<const BlockQ8_0*>(a), stride, out,   \
                       out_stride);                                                                                \
            },                                                                                                     \
            [](int64_t n, int64_t cols, const void* g, const void* a, const int32_t*, int64_t stride, float* out,  \
               int64_t out_stride) {                                                                               \
              const auto* gg = static_cast<const BlockQ4_0x8*>(g);                                                 \
              const auto* aa = static_cast<const BlockQ8_0*>(a);                                                   \
              if (n == 1) return FN<1, L>(cols, gg, aa, stride, out, out_stride);                                  \
              if (n == 2) return FN<2, L>(cols, gg, aa, stride, out, out_stride);                                  \
              FN<3, L>(cols, gg, aa, stride, out, out_stride);                                                     \
            }}

}  // namespace
#endif  // defined(__x86_64__)

namespace {

// The kernels of the layout whose nibbles index the levels L, as cpu_isa() allows them.
template <const int8_t* L, void (*Ref)(int64_t, const BlockQ4_0x8*, const BlockQ8_0*, float*)>
X8Kernels nibble_table_x8_kernels() {
#if defined(__x86_64__)
  if (qdot_simd_active()) {
    // Every encoding sums the same integers: the best one the CPU has.
    switch (qdot_vnni()) {
      case Vnni::avx512: return LMPRESS_IQ4_NLX8_KERNELS(gemmt_u8_avx512vnni, L);
      case Vnni::avx: return LMPRESS_IQ4_NLX8_KERNELS(gemmt_u8_avxvnni, L);
      case Vnni::emulated:
      case Vnni::none: break;
    }
    return LMPRESS_IQ4_NLX8_KERNELS(gemmt_avx2, L);
  }
#endif
  return x8_reference_kernels<BlockQ4_0x8, BlockQ8_0, Ref>();
}

}  // namespace

X8Kernels iq4_nlx8_kernels() { return nibble_table_x8_kernels<kIQ4NLValues, gemv_iq4_nlx8_ref>(); }
X8Kernels mxfp4x8_kernels() { return nibble_table_x8_kernels<kFp4Values, gemv_mxfp4x8_ref>(); }
#undef LMPRESS_IQ4_NLX8_KERNELS

}  // namespace lmpress
