#include "kernels/q4_kx8.h"

#include <cstring>

#include "core/fp16.h"
#include "kernels/interleave.h"
#include "kernels/q4_kx8_avx2.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/avx2_helpers.h"
#include "kernels/x8_vnni.h"
#endif

namespace lmpress {

using q4_kx8_avx2::sub_sum;
#if defined(__x86_64__)
using q4_kx8_avx2::block_epilogue;
using q4_kx8_avx2::block_mins;
using q4_kx8_avx2::rows_u8;
#endif

namespace {

// The 12 packed bytes of Q4_K from 8 scales and 8 mins (6 bits each): the
// inverse of scale_min_k4, which uses every bit, so a file's bytes come back.
void encode_scales_k4(const uint8_t* sc, const uint8_t* m, uint8_t* q) {
  for (int j = 0; j < 4; j++) {
    q[j] = uint8_t((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = uint8_t((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    q[j + 8] = uint8_t((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

}  // namespace

void pack_q4_kx8(const BlockQ4_K* rows, int64_t cols, BlockQ4_Kx8* out) {
  const int64_t nb = cols / QK_K;
  for (int64_t b = 0; b < nb; b++)
    for (int r = 0; r < 8; r++) {
      const BlockQ4_K& s = rows[r * nb + b];
      BlockQ4_Kx8& o = out[b];
      o.d[r] = s.d;
      o.dmin[r] = s.dmin;
      for (int j = 0; j < 8; j++) scale_min_k4(j, s.scales, o.sc[j][r], o.m[j][r]);
      // File byte 32c + l holds weight 64c + l (low) and 64c + 32 + l (high):
      // vector v takes bytes l = 4v..4v+3 of each row.
      for (int c = 0; c < 4; c++)
        for (int v = 0; v < 8; v++) std::memcpy(&o.qs[c][v][4 * r], s.qs + 32 * c + 4 * v, 4);
    }
}

void unpack_q4_kx8_row(const BlockQ4_Kx8* group, int64_t cols, int r, BlockQ4_K* out) {
  for (int64_t b = 0; b < cols / QK_K; b++) {
    const BlockQ4_Kx8& g = group[b];
    out[b].d = g.d[r];
    out[b].dmin = g.dmin[r];
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) sc[j] = g.sc[j][r], m[j] = g.m[j][r];
    encode_scales_k4(sc, m, out[b].scales);
    for (int c = 0; c < 4; c++)
      for (int v = 0; v < 8; v++) std::memcpy(out[b].qs + 32 * c + 4 * v, &g.qs[c][v][4 * r], 4);
  }
}

void dequantize_q4_kx8_row(const BlockQ4_Kx8* group, int64_t cols, int r, float* out) {
  for (int64_t b = 0; b < cols / QK_K; b++, out += QK_K) {
    const BlockQ4_Kx8& g = group[b];
    const float d = f16_to_f32(g.d[r]), dmin = f16_to_f32(g.dmin[r]);
    for (int c = 0; c < 4; c++)
      for (int v = 0; v < 8; v++)
        for (int i = 0; i < 4; i++) {
          const uint8_t q = g.qs[c][v][4 * r + i];
          out[64 * c + 4 * v + i] = d * g.sc[2 * c][r] * float(q & 0x0F) - dmin * g.m[2 * c][r];
          out[64 * c + 32 + 4 * v + i] = d * g.sc[2 * c + 1][r] * float(q >> 4) - dmin * g.m[2 * c + 1][r];
        }
  }
}

Tensor repack_q4_kx8(const Tensor& t) {
  return repack_x8<BlockQ4_K, BlockQ4_Kx8>(
      t, DType::Q4_K, DType::Q4_K_X8,
      [](const BlockQ4_K* rows, int64_t cols, BlockQ4_Kx8* out) {
        pack_q4_kx8(rows, cols, out);
        return true;
      },
      QK_K);
}

std::vector<uint8_t> unpack_q4_kx8(const Tensor& t) {
  return unpack_x8<BlockQ4_K, BlockQ4_Kx8>(t, unpack_q4_kx8_row, QK_K);
}

void gemv_q4_kx8_ref(int64_t cols, const BlockQ4_Kx8* g, const BlockQ8_K* a, float* out) {
  float acc[8] = {};
  for (int64_t b = 0; b < cols / QK_K; b++)
    for (int r = 0; r < 8; r++) {
      int32_t dot = 0, mins = 0;
      for (int c = 0; c < 4; c++) {
        int32_t lo = 0, hi = 0;
        for (int v = 0; v < 8; v++)
          for (int i = 0; i < 4; i++) {
            const uint8_t q = g[b].qs[c][v][4 * r + i];
            lo += int32_t(q & 0x0F) * a[b].qs[64 * c + 4 * v + i];
            hi += int32_t(q >> 4) * a[b].qs[64 * c + 32 + 4 * v + i];
          }
        dot += int32_t(g[b].sc[2 * c][r]) * lo + int32_t(g[b].sc[2 * c + 1][r]) * hi;
      }
      for (int j = 0; j < 8; j++) mins += int32_t(g[b].m[j][r]) * sub_sum(a[b], j);
      acc[r] += a[b].d * (f16_to_f32(g[b].d[r]) * float(dot) - f16_to_f32(g[b].dmin[r]) * float(mins));
    }
  std::memcpy(out, acc, sizeof(acc));
}

#if defined(__x86_64__)
namespace {

// Sub-block dots (int32 per row) of one chunk half: nibbles (low: shift 0,
// high: shift 4) times activations x[4v..4v+3] for v = 0..7. Eight maddubs of
// ≤ 2·15·127 each stay within int16.
__attribute__((target("avx2"))) inline __m256i chunk_dot(const uint8_t (*qs)[32], int shift, const int8_t* x) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  __m256i s16 = _mm256_setzero_si256();
  for (int v = 0; v < 8; v++) {
    const __m256i q = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs[v])), shift), low);
    int32_t y;
    std::memcpy(&y, x + 4 * v, 4);
    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(q, _mm256_set1_epi32(y)));
  }
  return _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
}

__attribute__((target("avx2,fma,f16c"))) void gemv_q4_kx8_avx2(int64_t cols, const BlockQ4_Kx8* g, const BlockQ8_K* a,
                                                              float* out) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / QK_K; b++) {
    simd_avx2::prefetch_ahead<sizeof(BlockQ4_Kx8)>(g + b);
    __m256i dot = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
      const __m256i lo = chunk_dot(g[b].qs[c], 0, a[b].qs + 64 * c);
      const __m256i hi = chunk_dot(g[b].qs[c], 4, a[b].qs + 64 * c + 32);
      dot = _mm256_add_epi32(dot, _mm256_add_epi32(_mm256_mullo_epi32(lo, rows_u8(g[b].sc[2 * c])),
                                                   _mm256_mullo_epi32(hi, rows_u8(g[b].sc[2 * c + 1]))));
    }
    acc = block_epilogue(g[b], a[b].d, dot, block_mins(g[b], a[b]), acc);
  }
  _mm256_storeu_ps(out, acc);
}

// As gemv, 4 tokens per pass: each nibble vector is loaded and masked once
// for the 4 tokens' activations. The float sums live in `out` between blocks
// (rounded as gemv's registers round them): with them in registers too, GCC
// spilled the int16 and int32 accumulators of the inner loops to the stack.
__attribute__((target("avx2,fma,f16c"))) void gemm4_q4_kx8_avx2(int64_t cols, const BlockQ4_Kx8* g,
                                                               const BlockQ8_K* a, int64_t stride, float* out,
                                                               int64_t out_stride) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  for (int t = 0; t < 4; t++) _mm256_storeu_ps(out + t * out_stride, _mm256_setzero_ps());
  for (int64_t b = 0; b < cols / QK_K; b++) {
    __m256i dot[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int c = 0; c < 4; c++)
      for (int half = 0; half < 2; half++) {  // the chunk's two sub-blocks: low, then high nibbles
        __m256i s16[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256()};
        const int8_t* x0 = a[b].qs + 64 * c + 32 * half;
#pragma GCC unroll 2
        for (int v = 0; v < 8; v++) {
          const __m256i q = _mm256_and_si256(
              _mm256_srli_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].qs[c][v])), 4 * half), low);
          for (int t = 0; t < 4; t++) {
            int32_t y;
            std::memcpy(&y, x0 + t * stride * int64_t(sizeof(BlockQ8_K)) + 4 * v, 4);
            s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(q, _mm256_set1_epi32(y)));
          }
        }
        // The sub-block scale (≤ 63) in both 16-bit halves of its row's lane: one vpmaddwd scales and adds
        // the pair of int16 sums (each ≤ 8·2·15·127), exact in int32.
        const __m256i sc = rows_u8(g[b].sc[2 * c + half]), sc2 = _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16));
        for (int t = 0; t < 4; t++) dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(s16[t], sc2));
      }
    const q4_kx8_avx2::MinPairs mp = q4_kx8_avx2::min_pairs(g[b]);
    for (int t = 0; t < 4; t++) {
      const BlockQ8_K& x = a[t * stride + b];
      float* o = out + t * out_stride;
      _mm256_storeu_ps(o, block_epilogue(g[b], x.d, dot[t], block_mins(mp, x), _mm256_loadu_ps(o)));
    }
  }
}

}  // namespace
#endif  // defined(__x86_64__)

X8Kernels q4_kx8_kernels() {
#if defined(__x86_64__)
  return with_gemm4x2(
      x8_kernels_with_vnni<BlockQ4_Kx8, BlockQ8_K, gemv_q4_kx8_ref, gemv_q4_kx8_avx2, gemm4_q4_kx8_avx2,
                           simd_avxvnni::gemm4_q4_kx8, simd_avx512vnni::gemm4_q4_kx8, simd_vnni_emulated::gemm4_q4_kx8,
                           simd_avxvnni::gemmn_q4_kx8, simd_avx512vnni::gemmn_q4_kx8,
                           simd_vnni_emulated::gemmn_q4_kx8>(),
      x8_gemm4<BlockQ4_Kx8, BlockQ8_K, simd_avx512vnni::gemm4x2_q4_kx8>);
#else
  return x8_reference_kernels<BlockQ4_Kx8, BlockQ8_K, gemv_q4_kx8_ref>();
#endif
}

void gemv_q4_kx8(int64_t cols, const BlockQ4_Kx8* g, const BlockQ8_K* a, float* out) {
  q4_kx8_kernels().gemv(cols, g, a, nullptr, out);
}

void gemm4_q4_kx8(int64_t cols, const BlockQ4_Kx8* g, const BlockQ8_K* a, int64_t stride, float* out,
                  int64_t out_stride) {
  q4_kx8_kernels().gemm4(cols, g, a, nullptr, stride, out, out_stride);
}

}  // namespace lmpress
