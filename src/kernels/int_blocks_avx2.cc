// AVX2 dots of the integer-unpacked types (kernels/int_blocks.h) with int8
// activations: each 32-value chunk of a block decoded into a register (grid
// entries gathered by index, signs applied as byte masks, levels by byte
// shuffle), multiplied with the activations by maddubs, scaled per group in
// int32 and per block in float. Same sums as dot_int_blocks_ref.
#if defined(__x86_64__)  // x86 only: on other architectures this file is empty
#include <immintrin.h>

#include <cstring>

#include "core/fp16.h"
#include "kernels/avx2_helpers.h"
#include "kernels/int_blocks.h"
#include "kernels/iq_grids.h"
#include "kernels/qdot.h"

namespace lmpress::simd_avx2 {
namespace {

#define LMP_AVX2 __attribute__((target("avx2"))) static inline

// Byte j of 8-byte group l negated where bit j of sign byte l (of signs4) is set.
LMP_AVX2 __m256i apply_signs(__m256i g, uint32_t signs4) {
  const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i bits = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i s = _mm256_shuffle_epi8(_mm256_set1_epi32(int(signs4)), spread);
  const __m256i m = _mm256_cmpeq_epi8(_mm256_and_si256(s, bits), bits);
  return _mm256_sub_epi8(_mm256_xor_si256(g, m), m);
}
LMP_AVX2 __m256i grid4(uint64_t e0, uint64_t e1, uint64_t e2, uint64_t e3) {
  return _mm256_set_epi64x(int64_t(e3), int64_t(e2), int64_t(e1), int64_t(e0));
}
// One scale for the chunk's 32 values, or one per 16 (lanes 0-3 cover values 0-15).
LMP_AVX2 __m256i scale32(int ls) { return _mm256_set1_epi32(ls); }
LMP_AVX2 __m256i scale16(int lo, int hi) { return _mm256_setr_epi32(lo, lo, lo, lo, hi, hi, hi, hi); }
inline uint32_t signs4(const uint8_t* s) {
  uint32_t v;
  std::memcpy(&v, s, 4);
  return v;
}
inline uint32_t packed_signs(uint32_t aux) {  // four 7-bit groups completed with their parity bit
  return uint32_t(kIqSigns[aux & 127]) | uint32_t(kIqSigns[(aux >> 7) & 127]) << 8 |
         uint32_t(kIqSigns[(aux >> 14) & 127]) << 16 | uint32_t(kIqSigns[(aux >> 21) & 127]) << 24;
}

// Each type: its block, the block's float scale (times the unit), and chunk c's values and group scales.
struct IQ2xxs {
  using B = BlockIQ2_XXS;
  static float d(const B& b) { return f16_to_f32(b.d) * 0.125f; }
  LMP_AVX2 void chunk(const B& b, int c, __m256i& q, __m256i& ls) {
    uint32_t aux[2];
    std::memcpy(aux, b.qs + 4 * c, sizeof aux);
    q = apply_signs(grid4(kIq2xxsGrid[aux[0] & 0xff], kIq2xxsGrid[(aux[0] >> 8) & 0xff],
                          kIq2xxsGrid[(aux[0] >> 16) & 0xff], kIq2xxsGrid[aux[0] >> 24]),
                    packed_signs(aux[1]));
    ls = scale32(int(2 * (aux[1] >> 28) + 1));
  }
};
struct IQ2xs {
  using B = BlockIQ2_XS;
  static float d(const B& b) { return f16_to_f32(b.d) * 0.125f; }
  LMP_AVX2 void chunk(const B& b, int c, __m256i& q, __m256i& ls) {
    const uint16_t* e = b.qs + 4 * c;
    q = apply_signs(grid4(kIq2xsGrid[e[0] & 511], kIq2xsGrid[e[1] & 511], kIq2xsGrid[e[2] & 511], kIq2xsGrid[e[3] & 511]),
                    uint32_t(kIqSigns[e[0] >> 9]) | uint32_t(kIqSigns[e[1] >> 9]) << 8 |
                        uint32_t(kIqSigns[e[2] >> 9]) << 16 | uint32_t(kIqSigns[e[3] >> 9]) << 24);
    ls = scale16(2 * (b.scales[c] & 0xf) + 1, 2 * (b.scales[c] >> 4) + 1);
  }
};
struct IQ2s {
  using B = BlockIQ2_S;
  static float d(const B& b) { return f16_to_f32(b.d) * 0.125f; }
  LMP_AVX2 void chunk(const B& b, int c, __m256i& q, __m256i& ls) {
    const uint8_t* qs = b.qs + 4 * c;
    const int h = b.qh[c];
    q = apply_signs(grid4(kIq2sGrid[qs[0] | ((h << 8) & 0x300)], kIq2sGrid[qs[1] | ((h << 6) & 0x300)],
                          kIq2sGrid[qs[2] | ((h << 4) & 0x300)], kIq2sGrid[qs[3] | ((h << 2) & 0x300)]),
                    signs4(b.qs + QK_K / 8 + 4 * c));
    ls = scale16(2 * (b.scales[c] & 0xf) + 1, 2 * (b.scales[c] >> 4) + 1);
  }
};
struct IQ3xxs {
  using B = BlockIQ3_XXS;
  static float d(const B& b) { return f16_to_f32(b.d) * 0.25f; }
  LMP_AVX2 void chunk(const B& b, int c, __m256i& q, __m256i& ls) {
    const uint8_t* qs = b.qs + 8 * c;
    uint32_t aux;
    std::memcpy(&aux, b.qs + QK_K / 4 + 4 * c, sizeof aux);
    const __m256i g = _mm256_setr_epi32(int(kIq3xxsGrid[qs[0]]), int(kIq3xxsGrid[qs[1]]), int(kIq3xxsGrid[qs[2]]),
                                        int(kIq3xxsGrid[qs[3]]), int(kIq3xxsGrid[qs[4]]), int(kIq3xxsGrid[qs[5]]),
                                        int(kIq3xxsGrid[qs[6]]), int(kIq3xxsGrid[qs[7]]));
    q = apply_signs(g, packed_signs(aux));
    ls = scale32(int(2 * (aux >> 28) + 1));
  }
};
struct IQ3s {
  using B = BlockIQ3_S;
  static float d(const B& b) { return f16_to_f32(b.d); }
  LMP_AVX2 void chunk(const B& b, int c, __m256i& q, __m256i& ls) {
    const uint8_t* qs = b.qs + 8 * c;
    const int h = b.qh[c];
    int e[8];
    for (int k = 0; k < 8; k++) e[k] = int(kIq3sGrid[qs[k] | ((h << (8 - k)) & 256)]);
    q = apply_signs(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(e)), signs4(b.signs + 4 * c));
    ls = scale32(2 * ((b.scales[c / 2] >> 4 * (c % 2)) & 0xf) + 1);
  }
};
// 8 · grid (values -1, 0, 1) + the per-8 shift ±1, as IQ1_S/IQ1_M store them in integers.
LMP_AVX2 __m256i iq1_values(__m256i g, __m256i delta) {
  const __m256i g2 = _mm256_add_epi8(g, g), g4 = _mm256_add_epi8(g2, g2);
  return _mm256_add_epi8(_mm256_add_epi8(g4, g4), delta);
}
struct IQ1s {
  using B = BlockIQ1_S;
  static float d(const B& b) { return f16_to_f32(b.d) * 0.125f; }
  LMP_AVX2 void chunk(const B& b, int c, __m256i& q, __m256i& ls) {
    const uint8_t* qs = b.qs + 4 * c;
    const int h = b.qh[c];
    q = iq1_values(grid4(kIq1sGrid[qs[0] | ((h & 7) << 8)], kIq1sGrid[qs[1] | (((h >> 3) & 7) << 8)],
                         kIq1sGrid[qs[2] | (((h >> 6) & 7) << 8)], kIq1sGrid[qs[3] | (((h >> 9) & 7) << 8)]),
                   _mm256_set1_epi8(h & 0x8000 ? -1 : 1));
    ls = scale32(2 * ((h >> 12) & 7) + 1);
  }
};
struct IQ1m {
  using B = BlockIQ1_M;
  static float d(const B& b) {
    uint16_t sc[4];
    std::memcpy(sc, b.scales, sizeof sc);
    return f16_to_f32(uint16_t((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000))) *
           0.125f;
  }
  LMP_AVX2 void chunk(const B& b, int c, __m256i& q, __m256i& ls) {
    const uint8_t* qs = b.qs + 4 * c;
    const int h0 = b.qh[2 * c], h1 = b.qh[2 * c + 1];
    const auto shift = [](int h) { return h & 8 ? int64_t(-1) : int64_t(0x0101010101010101); };
    q = iq1_values(grid4(kIq1sGrid[qs[0] | ((h0 & 7) << 8)], kIq1sGrid[qs[1] | (((h0 >> 4) & 7) << 8)],
                         kIq1sGrid[qs[2] | ((h1 & 7) << 8)], kIq1sGrid[qs[3] | (((h1 >> 4) & 7) << 8)]),
                   _mm256_set_epi64x(shift(h1 >> 4), shift(h1), shift(h0 >> 4), shift(h0)));
    uint16_t sc;
    std::memcpy(&sc, b.scales + 2 * (c / 2), sizeof sc);
    const int s = sc >> (6 * (c % 2));
    ls = scale16(2 * (s & 7) + 1, 2 * ((s >> 3) & 7) + 1);
  }
};
struct IQ4xs {
  using B = BlockIQ4_XS;
  static float d(const B& b) { return f16_to_f32(b.d); }
  LMP_AVX2 void chunk(const B& b, int c, __m256i& q, __m256i& ls) {
    const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues));
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * c));
    const __m128i low = _mm_set1_epi8(0x0F);
    q = _mm256_set_m128i(_mm_shuffle_epi8(levels, _mm_and_si128(_mm_srli_epi16(x, 4), low)),
                         _mm_shuffle_epi8(levels, _mm_and_si128(x, low)));
    ls = scale32((((b.scales_l[c / 2] >> 4 * (c % 2)) & 0xf) | (((b.scales_h >> 2 * c) & 3) << 4)) - 32);
  }
};
struct TQ2 {
  using B = BlockTQ2_0;
  static float d(const B& b) { return f16_to_f32(b.d); }
  LMP_AVX2 void chunk(const B& b, int c, __m256i& q, __m256i& ls) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * (c / 4)));
    const __m256i v = _mm256_and_si256(_mm256_srl_epi16(x, _mm_cvtsi32_si128(2 * (c % 4))), _mm256_set1_epi8(3));
    q = _mm256_sub_epi8(v, _mm256_set1_epi8(1));
    ls = scale32(1);
  }
};

// Σ over the blocks of d_w · d_a · Σ_chunks ls · (q · a).
template <class T>
__attribute__((target("avx2,fma"))) float dot_q8_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const typename T::B*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    __m256i sum = _mm256_setzero_si256();
    for (int c = 0; c < QK_K / 32; c++) {
      __m256i q, ls;
      T::chunk(bw[b], c, q, ls);
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * c));
      sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(dot_i8_lanes(q, y), ls));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(T::d(bw[b]) * a[b].d), _mm256_cvtepi32_ps(sum), acc);
  }
  return hsum(acc);
}

}  // namespace

float dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ4xs>(n, w, a); }
float dot_iq3_xxs_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ3xxs>(n, w, a); }
float dot_iq3_s_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ3s>(n, w, a); }
float dot_iq2_xxs_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ2xxs>(n, w, a); }
float dot_iq2_xs_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ2xs>(n, w, a); }
float dot_iq2_s_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ2s>(n, w, a); }
float dot_iq1_s_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ1s>(n, w, a); }
float dot_iq1_m_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ1m>(n, w, a); }
float dot_tq2_0_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<TQ2>(n, w, a); }

// TQ1_0's base-3 digits have no cheap byte shuffle: unpacked by the scalar
// decoder, summed with AVX2.
__attribute__((target("avx2,fma"))) float dot_tq1_0_q8_K(int64_t n, const void* w, const void* act) {
  static const IntBlockFormat* const f = int_block_format(DType::TQ1_0);
  const auto* p = static_cast<const uint8_t*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  UnpackedBlock u;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(BlockTQ1_0)) {
    f->unpack(p, u);
    __m256i sum = _mm256_setzero_si256();
    for (int c = 0; c < QK_K / 32; c++)
      sum = _mm256_add_epi32(sum, dot_i8_lanes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u.q + 32 * c)),
                                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * c))));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(u.d * a[b].d), _mm256_cvtepi32_ps(sum), acc);
  }
  return hsum(acc);
}

// MXFP4: the nibbles index the doubled E2M1 levels (one byte shuffle per 32 values).
__attribute__((target("avx2,fma,f16c"))) float dot_mxfp4_q8_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockMXFP4*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kFp4Values));
  const __m128i low = _mm_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / 32; b++) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bw[b].qs));
    const __m256i q = _mm256_set_m128i(_mm_shuffle_epi8(levels, _mm_and_si128(_mm_srli_epi16(x, 4), low)),
                                       _mm_shuffle_epi8(levels, _mm_and_si128(x, low)));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(e8m0_to_f32_half(bw[b].e) * h2f(a[b].d)), dot_i8(q, y), acc);
  }
  return hsum(acc);
}

}  // namespace lmpress::simd_avx2
#endif
