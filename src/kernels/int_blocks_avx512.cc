// AVX-512 dots of integer-unpacked types (kernels/int_blocks.h) whose AVX2
// dot (kernels/int_blocks_avx2.cc) spends its time building registers: two
// 32-value chunks per 512-bit register where that pays. The same integer sums
// and float epilogue as the AVX2 dot, lane for lane, so each row's dot is the
// AVX2 dot's bit for bit. (Gathers of grid entries were tried: slower than
// the AVX2 dot's inserts on Zen 4.)
#if defined(__x86_64__)  // x86 only: on other architectures this file is empty
#include <immintrin.h>

#include <array>
#include <cstring>

#include "core/fp16.h"
#include "kernels/avx2_helpers.h"
#include "kernels/blocks.h"
#include "kernels/iq_grids.h"
#include "kernels/qdot.h"

namespace lmpress {

// GCC 12's 512-bit intrinsics pass an uninitialized "undefined" operand to
// their masked builtins, which -W(maybe-)uninitialized reports in every caller.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace {

#define LMPRESS_AVX512_TARGET "avx2,fma,f16c,bmi2,avx512f,avx512vl,avx512bw,avx512dq"

// Four 7-bit sign groups (bits 0..27 of aux) as 4 sign bytes, each completed
// to even parity (kIqSigns): bit j of byte l set = value 8l + j negative.
__attribute__((target(LMPRESS_AVX512_TARGET))) inline uint32_t even_signs(uint32_t aux) {
  const uint32_t s = _pdep_u32(aux, 0x7F7F7F7Fu);
  uint32_t p = s ^ (s >> 4);  // bit 0 of each byte ends as the parity of that byte's 7 bits
  p ^= p >> 2;
  p ^= p >> 1;
  return s | ((p & 0x01010101u) << 7);
}

// A 4-bit group scale s as 2s + 1 in 16 int16 lanes: IQ2_XS's scale-pair row
// whose two nibbles are both s, one load instead of a broadcast.
__attribute__((target(LMPRESS_AVX512_TARGET))) inline __m256i group_scale(uint32_t s) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(kIqScalePairs[17 * s].data()));
}

}  // namespace

}  // namespace lmpress

namespace lmpress::simd_avx512 {

// IQ2_XS: per 32-value chunk four words of a 9-bit grid index and a 7-bit
// sign group. The AVX2 dot builds each chunk's ±1 bytes from four table
// loads; here a block's 32 sign groups are completed to even parity in one
// register (a nibble-parity byte shuffle), whose 256 bits are then the
// block's signs in value order: a chunk's 32 bits become an opmask that
// negates the activations. The grid entries are loaded as in the AVX2 dot;
// the lanes, their integer sums and the float epilogue are its own.
__attribute__((target(LMPRESS_AVX512_TARGET))) float dot_iq2_xs_q8_K(int64_t n, const void* w, const void* act) {
  // Bit 7 set where the 4-bit index has odd parity.
  const __m256i parity = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0));
  const __m256i low = _mm256_set1_epi8(0x0F);
  const auto* bw = static_cast<const BlockIQ2_XS*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    const BlockIQ2_XS& x = bw[b];
    const __m256i e0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs));
    const __m256i e1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 16));
    // The 32 sign groups as bytes in word order (packus interleaves the 128-bit lanes: put them back).
    __m256i sg = _mm256_permute4x64_epi64(_mm256_packus_epi16(_mm256_srli_epi16(e0, 9), _mm256_srli_epi16(e1, 9)),
                                          _MM_SHUFFLE(3, 1, 2, 0));
    sg = _mm256_or_si256(sg, _mm256_xor_si256(_mm256_shuffle_epi8(parity, _mm256_and_si256(sg, low)),
                                              _mm256_shuffle_epi8(parity, _mm256_and_si256(_mm256_srli_epi16(sg, 4), low))));
    const __m128i s_lo = _mm256_castsi256_si128(sg), s_hi = _mm256_extracti128_si256(sg, 1);
    const uint64_t signs[4] = {uint64_t(_mm_cvtsi128_si64(s_lo)), uint64_t(_mm_extract_epi64(s_lo, 1)),
                               uint64_t(_mm_cvtsi128_si64(s_hi)), uint64_t(_mm_extract_epi64(s_hi, 1))};
    __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
#pragma GCC unroll 8
    for (int c = 0; c < QK_K / 32; c++) {
      const uint16_t* e = x.qs + 4 * c;
      const __m256i g = _mm256_set_epi64x(int64_t(kIq2xsGrid[e[3] & 511]), int64_t(kIq2xsGrid[e[2] & 511]),
                                          int64_t(kIq2xsGrid[e[1] & 511]), int64_t(kIq2xsGrid[e[0] & 511]));
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * c));
      const __mmask32 neg = __mmask32(signs[c / 2] >> (32 * (c % 2)));
      const __m256i ys = _mm256_mask_sub_epi8(y, neg, _mm256_setzero_si256(), y);
      const __m256i ls = _mm256_load_si256(reinterpret_cast<const __m256i*>(kIqScalePairs[x.scales[c]].data()));
      sum[c % 2] = _mm256_add_epi32(sum[c % 2], _mm256_madd_epi16(_mm256_maddubs_epi16(g, ys), ls));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(simd_avx2::h2f(x.d) * 0.125f * a[b].d), _mm256_cvtepi32_ps(_mm256_add_epi32(sum[0], sum[1])),
                          acc);
  }
  return simd_avx2::hsum(acc);
}

}  // namespace lmpress::simd_avx512

namespace lmpress::simd_avx512_vbmi {

#define LMPRESS_VBMI_TARGET LMPRESS_AVX512_TARGET ",avx512vbmi"

// IQ3_XXS: per 32-value chunk 8 one-byte indices into 4-magnitude entries,
// then a word of four 7-bit sign groups and the 4-bit group scale. A block's
// 64 entries are looked up at once: byte j of every entry from a 256-byte
// table of byte j's (two vpermi2b of 128 bytes each, the index's top bit
// choosing), the four byte planes then interleaved into value order.
__attribute__((target(LMPRESS_VBMI_TARGET))) float dot_iq3_xxs_q8_K(int64_t n, const void* w, const void* act) {
  static const std::array<std::array<uint8_t, 256>, 4> planes = [] {
    std::array<std::array<uint8_t, 256>, 4> t{};
    for (int i = 0; i < 256; i++)
      for (int j = 0; j < 4; j++) t[size_t(j)][size_t(i)] = uint8_t(kIq3xxsGrid[i] >> 8 * j);
    return t;
  }();
  __m512i tab[4][4];
  for (int j = 0; j < 4; j++)
    for (int q = 0; q < 4; q++) tab[j][q] = _mm512_loadu_si512(planes[size_t(j)].data() + 64 * q);
  // The unpacks below work within 128-bit lanes: entry 16m + 4l + r must sit at index 16l + 4m + r for
  // output m to hold entries 16m..16m+15 in order (a 4x4 transpose of 4-entry groups).
  const __m512i transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const auto* bw = static_cast<const BlockIQ3_XXS*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    const BlockIQ3_XXS& x = bw[b];
    const __m512i idx = _mm512_permutexvar_epi32(transpose, _mm512_loadu_si512(x.qs));
    const __mmask64 high = _mm512_movepi8_mask(idx);
    __m512i plane[4];
    for (int j = 0; j < 4; j++)
      plane[j] = _mm512_mask_blend_epi8(high, _mm512_permutex2var_epi8(tab[j][0], idx, tab[j][1]),
                                        _mm512_permutex2var_epi8(tab[j][2], idx, tab[j][3]));
    const __m512i b01[2] = {_mm512_unpacklo_epi8(plane[0], plane[1]), _mm512_unpackhi_epi8(plane[0], plane[1])};
    const __m512i b23[2] = {_mm512_unpacklo_epi8(plane[2], plane[3]), _mm512_unpackhi_epi8(plane[2], plane[3])};
    // Lanes 0-7 sum chunks 0, 2, 4, 6 and lanes 8-15 chunks 1, 3, 5, 7, as the AVX2 dot's two sums.
    __m512i sum = _mm512_setzero_si512();
    for (int m = 0; m < 4; m++) {  // values 64m..64m+63: chunks 2m and 2m + 1
      const __m512i g = m % 2 ? _mm512_unpackhi_epi16(b01[m / 2], b23[m / 2]) : _mm512_unpacklo_epi16(b01[m / 2], b23[m / 2]);
      uint32_t aux[2];
      std::memcpy(aux, x.qs + QK_K / 4 + 8 * m, sizeof aux);
      const __mmask64 neg = _cvtu64_mask64(uint64_t(even_signs(aux[0])) | uint64_t(even_signs(aux[1])) << 32);
      const __m512i y = _mm512_loadu_si512(a[b].qs + 64 * m);
      // |q|·(±y): the grid's magnitudes are unsigned, the signs go to the activations (never −128 in Q8_K).
      const __m512i p16 = _mm512_maddubs_epi16(g, _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y));
      const __m512i ls = _mm512_inserti64x4(_mm512_castsi256_si512(group_scale(aux[0] >> 28)), group_scale(aux[1] >> 28), 1);
      sum = _mm512_add_epi32(sum, _mm512_madd_epi16(p16, ls));
    }
    const __m256i s32 = _mm256_add_epi32(_mm512_castsi512_si256(sum), _mm512_extracti64x4_epi64(sum, 1));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(simd_avx2::h2f(x.d) * 0.25f * a[b].d), _mm256_cvtepi32_ps(s32), acc);
  }
  return simd_avx2::hsum(acc);
}

#undef LMPRESS_VBMI_TARGET
}  // namespace lmpress::simd_avx512_vbmi

namespace lmpress::simd_avx512vnni {

#define LMPRESS_VNNI512_TARGET LMPRESS_AVX512_TARGET ",avx512vnni"

// IQ4_XS: two chunks per 512-bit register, in value order (a chunk's 16 bytes
// hold values 0-15 in the low nibbles, 16-31 in the high ones), their levels
// + 128 by one byte shuffle, fed unsigned to vpdpbusd; a second vpdpbusd of
// 128 against the activations takes the offset off per lane. Each lane then
// holds the AVX2 dot's int32 (values 4k..4k+3 of a chunk), times the chunk's
// scale as there.
__attribute__((target(LMPRESS_VNNI512_TARGET))) float dot_iq4_xs_q8_K(int64_t n, const void* w, const void* act) {
  // The levels + 128, made once (kIQ4NLValues is not a constant expression here).
  static const std::array<uint8_t, 16> shifted = [] {
    std::array<uint8_t, 16> t{};
    for (int i = 0; i < 16; i++) t[size_t(i)] = uint8_t(kIQ4NLValues[i] + 128);
    return t;
  }();
  const __m512i levels = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(shifted.data())));
  const __m512i low = _mm512_set1_epi8(0x0F), offset = _mm512_set1_epi8(int8_t(0x80));
  const auto* bw = static_cast<const BlockIQ4_XS*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    const BlockIQ4_XS& x = bw[b];
    __m512i sum = _mm512_setzero_si512();
    for (int c = 0; c < QK_K / 32; c += 2) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 16 * c));
      const __m256i lo = _mm256_and_si256(q, _mm512_castsi512_si256(low));
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm512_castsi512_si256(low));
      // [lo of c, lo of c + 1, hi of c, hi of c + 1] as 128-bit lanes, reordered to [lo c, hi c, lo c+1, hi c+1].
      const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      const __m512i nib = _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(3, 1, 2, 0));
      const __m512i y = _mm512_loadu_si512(a[b].qs + 32 * c);
      const __m512i dot = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_shuffle_epi8(levels, nib), y),
                                           _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, y));
      const auto ls = [&](int k) {
        return ((x.scales_l[k / 2] >> 4 * (k % 2)) & 0xf) | (((x.scales_h >> 2 * k) & 3) << 4);
      };
      const __m512i scale = _mm512_mask_blend_epi32(__mmask16(0xFF00), _mm512_set1_epi32(ls(c) - 32), _mm512_set1_epi32(ls(c + 1) - 32));
      sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(dot, scale));
    }
    const __m256i s32 = _mm256_add_epi32(_mm512_castsi512_si256(sum), _mm512_extracti64x4_epi64(sum, 1));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(simd_avx2::h2f(x.d) * a[b].d), _mm256_cvtepi32_ps(s32), acc);
  }
  return simd_avx2::hsum(acc);
}

#undef LMPRESS_VNNI512_TARGET

}  // namespace lmpress::simd_avx512vnni

#undef LMPRESS_AVX512_TARGET
#pragma GCC diagnostic pop
#endif  // defined(__x86_64__)
