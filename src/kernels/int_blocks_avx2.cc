// AVX2 dots of the integer-unpacked types (kernels/int_blocks.h) with int8
// activations: each 32-value chunk of a block decoded into a register (grid
// entries gathered by index, signs applied as byte masks, levels by byte
// shuffle), multiplied with the activations by maddubs, scaled per group in
// int32 and per block in float. Same sums as dot_int_blocks_ref.
#if defined(__x86_64__)  // x86 only: on other architectures this file is empty
#include <immintrin.h>

#include <array>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/avx2_helpers.h"
#include "kernels/int_blocks.h"
#include "kernels/iq_grids.h"
#include "kernels/lmp2.h"
#include "kernels/qdot.h"

namespace lmpress::simd_avx2 {
namespace {

#define LMP_AVX2 __attribute__((target("avx2,f16c,bmi,bmi2"))) static inline

// Sign byte s as 8 bytes of +1 / −1 (bit j set: byte j is −1), for _mm256_sign_epi8;
// kEvenSignMask for a 7-bit index completed by parity (ggml's keven_signs_q2xs).
constexpr std::array<uint64_t, 256> kSignMask = [] {
  std::array<uint64_t, 256> t{};
  for (int s = 0; s < 256; s++)
    for (int j = 0; j < 8; j++) t[size_t(s)] |= uint64_t((s >> j & 1) ? 0xff : 0x01) << (8 * j);
  return t;
}();
constexpr std::array<uint64_t, 128> kEvenSignMask = [] {
  std::array<uint64_t, 128> t{};
  for (int i = 0; i < 128; i++) t[size_t(i)] = kSignMask[kIqSigns[size_t(i)]];
  return t;
}();
// Four 8-value grid entries (values 0-7, 8-15, ...), or their four sign masks.
LMP_AVX2 __m256i grid4(uint64_t e0, uint64_t e1, uint64_t e2, uint64_t e3) {
  return _mm256_set_epi64x(int64_t(e3), int64_t(e2), int64_t(e1), int64_t(e0));
}
// Four explicit sign bytes (IQ2_S, IQ3_S store them contiguously) as +1 / −1 bytes for _mm256_sign_epi8,
// made in registers: byte j of group l tests bit j of sign byte l.
LMP_AVX2 __m256i sign_bytes(const uint8_t* s4) {
  uint32_t v;
  std::memcpy(&v, s4, 4);
  const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i bits = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i m = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(int(v)), spread), bits), bits);
  return _mm256_or_si256(m, _mm256_set1_epi8(1));
}
// The group scales as 16-bit lanes, one per product pair: one scale for the chunk's 32 values, or one per 16
// (lanes 0-7 cover values 0-15). madd with them sums the pairs and scales them in one instruction.
LMP_AVX2 __m256i scale32(int ls) { return _mm256_set1_epi16(int16_t(ls)); }
LMP_AVX2 __m256i scale16(int lo, int hi) {
  return _mm256_set_m128i(_mm_set1_epi16(int16_t(hi)), _mm_set1_epi16(int16_t(lo)));
}
// IQ2_XS / IQ2_S's scale byte: a load, where scale16 costs five shuffles.
LMP_AVX2 __m256i scale_pair(uint8_t s) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(kIqScalePairs[s].data())); }

// Each type: its block, the block's float scale (times the unit), and chunk c's values and group scales. The
// codebook types give their values as non-negative grid bytes g and ±1 bytes sg (values sign(g, sg)), so that a
// dot applies the signs to the activations alone; the others give signed values q. A type may split a block's
// fields once (Split, split()) for its chunks to read.
struct NoSplit {
  struct Split {};
  template <class B>
  LMP_AVX2 void split(const B&, Split&) {}
};
// IQ2_XXS's 32 values from their two words: four 8-bit indices into `grid`, four 7-bit even-parity sign groups.
LMP_AVX2 void iq2xxs_values(const uint64_t* grid, const uint32_t* aux, __m256i& g, __m256i& sg) {
  g = grid4(grid[aux[0] & 0xff], grid[(aux[0] >> 8) & 0xff], grid[(aux[0] >> 16) & 0xff], grid[aux[0] >> 24]);
  sg = grid4(kEvenSignMask[aux[1] & 127], kEvenSignMask[(aux[1] >> 7) & 127], kEvenSignMask[(aux[1] >> 14) & 127],
             kEvenSignMask[(aux[1] >> 21) & 127]);
}
struct IQ2xxs : NoSplit {
  using B = BlockIQ2_XXS;
  LMP_AVX2 float d(const B& b) { return h2f(b.d) * 0.125f; }
  LMP_AVX2 void chunk(const B& b, const Split&, int c, __m256i& g, __m256i& sg, __m256i& ls) {
    uint32_t aux[2];
    std::memcpy(aux, b.qs + 4 * c, sizeof aux);
    iq2xxs_values(kIq2xxsGrid, aux, g, sg);
    ls = scale32(int(2 * (aux[1] >> 28) + 1));
  }
};
struct IQ2xs {
  using B = BlockIQ2_XS;
  LMP_AVX2 float d(const B& b) { return h2f(b.d) * 0.125f; }
  // The block's 32 sign groups completed to even parity in one register (bit 7 from a nibble-parity byte
  // shuffle): its 256 bits are the block's signs in value order, chunk c's in dword c. Cheaper than four table
  // loads per chunk.
  struct Split {
    __m256i signs;
  };
  LMP_AVX2 void split(const B& b, Split& s) {
    const __m256i parity = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(0, -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0));
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i e0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
    const __m256i e1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 16));
    // The groups as bytes in word order (packus interleaves the 128-bit lanes: put them back).
    const __m256i g = _mm256_permute4x64_epi64(_mm256_packus_epi16(_mm256_srli_epi16(e0, 9), _mm256_srli_epi16(e1, 9)),
                                               _MM_SHUFFLE(3, 1, 2, 0));
    s.signs = _mm256_or_si256(g, _mm256_xor_si256(_mm256_shuffle_epi8(parity, _mm256_and_si256(g, low)),
                                                  _mm256_shuffle_epi8(parity, _mm256_and_si256(_mm256_srli_epi16(g, 4), low))));
  }
  LMP_AVX2 void chunk(const B& b, const Split& s, int c, __m256i& g, __m256i& sg, __m256i& ls) {
    const uint16_t* e = b.qs + 4 * c;
    g = grid4(kIq2xsGrid[e[0] & 511], kIq2xsGrid[e[1] & 511], kIq2xsGrid[e[2] & 511], kIq2xsGrid[e[3] & 511]);
    // Chunk c's four sign bytes, byte j / 8 to byte j, bit j % 8 tested.
    const __m256i spread = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(s.signs, _mm256_set1_epi32(c)),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                                 0x0101010101010101, 0));
    const __m256i bits = _mm256_set1_epi64x(int64_t(0x8040201008040201));
    sg = _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bits), bits), _mm256_set1_epi8(1));
    ls = scale_pair(b.scales[c]);
  }
};
struct IQ2s : NoSplit {
  using B = BlockIQ2_S;
  LMP_AVX2 float d(const B& b) { return h2f(b.d) * 0.125f; }
  LMP_AVX2 void chunk(const B& b, const Split&, int c, __m256i& g, __m256i& sg, __m256i& ls) {
    const uint8_t* qs = b.qs + 4 * c;
    const int h = b.qh[c];
    g = grid4(kIq2sGrid[qs[0] | ((h << 8) & 0x300)], kIq2sGrid[qs[1] | ((h << 6) & 0x300)],
              kIq2sGrid[qs[2] | ((h << 4) & 0x300)], kIq2sGrid[qs[3] | ((h << 2) & 0x300)]);
    sg = sign_bytes(b.qs + QK_K / 8 + 4 * c);
    ls = scale_pair(b.scales[c]);
  }
};
struct IQ3xxs : NoSplit {
  using B = BlockIQ3_XXS;
  LMP_AVX2 float d(const B& b) { return h2f(b.d) * 0.25f; }
  LMP_AVX2 void chunk(const B& b, const Split&, int c, __m256i& g, __m256i& sg, __m256i& ls) {
    const uint8_t* qs = b.qs + 8 * c;
    uint32_t aux;
    std::memcpy(&aux, b.qs + QK_K / 4 + 4 * c, sizeof aux);
    g = _mm256_setr_epi32(int(kIq3xxsGrid[qs[0]]), int(kIq3xxsGrid[qs[1]]), int(kIq3xxsGrid[qs[2]]),
                          int(kIq3xxsGrid[qs[3]]), int(kIq3xxsGrid[qs[4]]), int(kIq3xxsGrid[qs[5]]),
                          int(kIq3xxsGrid[qs[6]]), int(kIq3xxsGrid[qs[7]]));
    sg = grid4(kEvenSignMask[aux & 127], kEvenSignMask[(aux >> 7) & 127], kEvenSignMask[(aux >> 14) & 127],
               kEvenSignMask[(aux >> 21) & 127]);
    ls = scale32(int(2 * (aux >> 28) + 1));
  }
};
struct IQ3s : NoSplit {
  using B = BlockIQ3_S;
  LMP_AVX2 float d(const B& b) { return h2f(b.d); }
  LMP_AVX2 void chunk(const B& b, const Split&, int c, __m256i& g, __m256i& sg, __m256i& ls) {
    const uint8_t* qs = b.qs + 8 * c;
    const int h = b.qh[c];
    // The 9-bit indices in one register (the ninth bit of entry k is bit k of qh), then one gather.
    const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs)));
    const __m256i hi = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32(h), _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1)),
                                        _mm256_set1_epi32(256));
    g = _mm256_i32gather_epi32(reinterpret_cast<const int*>(kIq3sGrid), _mm256_or_si256(lo, hi), 4);
    sg = sign_bytes(b.signs + 4 * c);
    ls = scale32(2 * ((b.scales[c / 2] >> 4 * (c % 2)) & 0xf) + 1);
  }
};
// 8 · grid (values -1, 0, 1) + the per-8 shift ±1, as IQ1_S/IQ1_M store them in integers.
LMP_AVX2 __m256i iq1_values(__m256i g, __m256i delta) {
  const __m256i g2 = _mm256_add_epi8(g, g), g4 = _mm256_add_epi8(g2, g2);
  return _mm256_add_epi8(_mm256_add_epi8(g4, g4), delta);
}
struct IQ1s : NoSplit {
  using B = BlockIQ1_S;
  LMP_AVX2 float d(const B& b) { return h2f(b.d) * 0.125f; }
  LMP_AVX2 void chunk(const B& b, const Split&, int c, __m256i& q, __m256i& ls) {
    const uint8_t* qs = b.qs + 4 * c;
    const int h = b.qh[c];
    q = iq1_values(grid4(kIq1sGrid[qs[0] | ((h & 7) << 8)], kIq1sGrid[qs[1] | (((h >> 3) & 7) << 8)],
                         kIq1sGrid[qs[2] | (((h >> 6) & 7) << 8)], kIq1sGrid[qs[3] | (((h >> 9) & 7) << 8)]),
                   _mm256_set1_epi8(h & 0x8000 ? -1 : 1));
    ls = scale32(2 * ((h >> 12) & 7) + 1);
  }
};
struct IQ1m : NoSplit {
  using B = BlockIQ1_M;
  LMP_AVX2 float d(const B& b) {
    uint16_t sc[4];
    std::memcpy(sc, b.scales, sizeof sc);
    return h2f(uint16_t((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000))) *
           0.125f;
  }
  LMP_AVX2 void chunk(const B& b, const Split&, int c, __m256i& q, __m256i& ls) {
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
struct IQ4xs : NoSplit {
  using B = BlockIQ4_XS;
  LMP_AVX2 float d(const B& b) { return h2f(b.d); }
  LMP_AVX2 void chunk(const B& b, const Split&, int c, __m256i& q, __m256i& ls) {
    const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues));
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * c));
    const __m128i low = _mm_set1_epi8(0x0F);
    q = _mm256_set_m128i(_mm_shuffle_epi8(levels, _mm_and_si128(_mm_srli_epi16(x, 4), low)),
                         _mm_shuffle_epi8(levels, _mm_and_si128(x, low)));
    ls = scale32((((b.scales_l[c / 2] >> 4 * (c % 2)) & 0xf) | (((b.scales_h >> 2 * c) & 3) << 4)) - 32);
  }
};
struct TQ2 : NoSplit {
  using B = BlockTQ2_0;
  LMP_AVX2 float d(const B& b) { return h2f(b.d); }
  LMP_AVX2 void chunk(const B& b, const Split&, int c, __m256i& q, __m256i& ls) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * (c / 4)));
    const __m256i v = _mm256_and_si256(_mm256_srl_epi16(x, _mm_cvtsi32_si128(2 * (c % 4))), _mm256_set1_epi8(3));
    q = _mm256_sub_epi8(v, _mm256_set1_epi8(1));
    ls = scale32(1);
  }
};

// LMP2's codes: IQ2_XXS's decode (grid entries, even-parity signs, the same words) plus the ±1 shifts of bits
// 28-31, the four as one 32-byte row of a 16-row table.
constexpr std::array<std::array<int8_t, 32>, 16> kLmp2Shifts = [] {
  std::array<std::array<int8_t, 32>, 16> t{};
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 32; j++) t[size_t(i)][size_t(j)] = int8_t((i >> (j / 8)) & 1 ? 1 : -1);
  return t;
}();
struct Lmp2 : NoSplit {
  using B = BlockLMP2;
  // One scale per block and values of at most 15: a block's eight pair-sum vectors (each pair at most 2·15·127)
  // add up in int16 without overflow (8·3810 < 32767), one widening per block instead of one per chunk.
  static constexpr bool kInt16Sums = true;
  LMP_AVX2 float d(const B& b) { return h2f(b.d) * 0.25f; }
  LMP_AVX2 void chunk(const B& b, const Split&, int c, __m256i& q, __m256i& ls) {
    uint32_t aux[2];
    std::memcpy(aux, b.qs + 4 * c, sizeof aux);
    __m256i g, sg;
    iq2xxs_values(kLmp2Grid.data(), aux, g, sg);
    q = _mm256_add_epi8(_mm256_sign_epi8(g, sg),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLmp2Shifts[aux[1] >> 28].data())));
    ls = scale32(1);
  }
};

// Types whose chunks' pair sums may add up in int16 over a block (kInt16Sums).
template <class T>
constexpr bool int16_sums = requires { T::kInt16Sums; };
// Types whose chunks come as grid bytes and signs (see NoSplit).
template <class T>
constexpr bool split_signs = requires(const typename T::B& b, const typename T::Split& s, __m256i& v) {
  T::chunk(b, s, 0, v, v, v);
};
// Chunk c as signed values, for the prompt decoders.
template <class T>
LMP_AVX2 void signed_chunk(const typename T::B& b, const typename T::Split& s, int c, __m256i& q, __m256i& ls) {
  if constexpr (split_signs<T>) {
    __m256i g, sg;
    T::chunk(b, s, c, g, sg, ls);
    q = _mm256_sign_epi8(g, sg);
  } else {
    T::chunk(b, s, c, q, ls);
  }
}

// Σ over the blocks of d_w · d_a · Σ_chunks ls · (q · a).
template <class T>
__attribute__((target("avx2,fma,f16c,bmi,bmi2"))) float dot_q8_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const typename T::B*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    // Two chunks per step into two sums: the chunks' decodes are independent, and unrolled they overlap.
    __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    typename T::Split sp;
    T::split(bw[b], sp);
#pragma GCC unroll 8
    for (int c = 0; c < QK_K / 32; c++) {
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * c));
      // Pairs of |q|·(±y) (at most 2·127·127, within int16), then ls · pair sums into int32.
      __m256i p16, ls;
      if constexpr (split_signs<T>) {
        __m256i g, sg;
        T::chunk(bw[b], sp, c, g, sg, ls);
        p16 = _mm256_maddubs_epi16(g, _mm256_sign_epi8(y, sg));
      } else {
        __m256i q;
        T::chunk(bw[b], sp, c, q, ls);
        p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q));
      }
      if constexpr (int16_sums<T>)
        sum[c % 2] = _mm256_add_epi16(sum[c % 2], p16);
      else
        sum[c % 2] = _mm256_add_epi32(sum[c % 2], _mm256_madd_epi16(p16, ls));
    }
    const __m256i s32 = int16_sums<T> ? _mm256_madd_epi16(_mm256_add_epi16(sum[0], sum[1]), _mm256_set1_epi16(1))
                                      : _mm256_add_epi32(sum[0], sum[1]);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(T::d(bw[b]) * a[b].d), _mm256_cvtepi32_ps(s32), acc);
  }
  return hsum(acc);
}

// One 32-value chunk as chunk_to_q8 (kernels/int_panels.cc) makes it: the values, and the scale d·ls of each
// 16-value half.
__attribute__((target("avx2,fma,f16c"))) inline void chunk_q8(float d, __m256i q, __m256i ls, ChunkQ8& o) {
  o.d[0] = d * float(int16_t(_mm256_extract_epi16(ls, 0)));
  o.d[1] = d * float(int16_t(_mm256_extract_epi16(ls, 8)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.qs), q);
}

template <class T>
__attribute__((target("avx2,fma,f16c"))) void decode_q8(const uint8_t* p, int64_t nblocks, ChunkQ8* out) {
  const auto* bw = reinterpret_cast<const typename T::B*>(p);
  for (int64_t b = 0; b < nblocks; b++) {
    const float d = T::d(bw[b]);
    typename T::Split sp;
    T::split(bw[b], sp);
    for (int c = 0; c < QK_K / 32; c++) {
      __m256i q, ls;
      signed_chunk<T>(bw[b], sp, c, q, ls);
      chunk_q8(d, q, ls, out[b * (QK_K / 32) + c]);
    }
  }
}

}  // namespace

PanelDecodeFn panel_decoder(DType t) {
  switch (t) {
    case DType::IQ4_XS: return decode_q8<IQ4xs>;
    case DType::IQ3_XXS: return decode_q8<IQ3xxs>;
    case DType::IQ3_S: return decode_q8<IQ3s>;
    case DType::IQ2_XXS: return decode_q8<IQ2xxs>;
    case DType::IQ2_XS: return decode_q8<IQ2xs>;
    case DType::IQ2_S: return decode_q8<IQ2s>;
    case DType::IQ1_S: return decode_q8<IQ1s>;
    case DType::IQ1_M: return decode_q8<IQ1m>;
    case DType::TQ2_0: return decode_q8<TQ2>;
    case DType::LMP2: return decode_q8<Lmp2>;
    default: return nullptr;
  }
}

float dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ4xs>(n, w, a); }
float dot_iq3_xxs_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ3xxs>(n, w, a); }
float dot_iq3_s_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ3s>(n, w, a); }
float dot_iq2_xxs_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ2xxs>(n, w, a); }
float dot_iq2_xs_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ2xs>(n, w, a); }
float dot_iq2_s_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ2s>(n, w, a); }
float dot_iq1_s_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ1s>(n, w, a); }
float dot_iq1_m_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<IQ1m>(n, w, a); }
// TQ2_0: its values are v − 1 with v in {0, 1, 2} as stored, so Σ q·y = Σ v·y − Σ y: v goes into maddubs as it
// is (no sign operations), the pair sums (at most 2·2·127) add up over the block in int16 (8 chunks: ≤ 4064),
// and the block's Σ y comes from the activations' block sums.
__attribute__((target("avx2,fma,f16c"))) float dot_tq2_0_q8_K(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockTQ2_0*>(w);
  const auto* a = static_cast<const BlockQ8_K*>(act);
  const __m256i three = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int c = 0; c < QK_K / 32; c++) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].qs + 32 * (c / 4)));
      const __m256i v = _mm256_and_si256(_mm256_srli_epi16(x, 2 * (c % 4)), three);
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * c));
      sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(v, y));
    }
    int32_t ysum = 0;
    for (int16_t s : a[b].bsums) ysum += s;
    const __m256i s32 = _mm256_sub_epi32(_mm256_madd_epi16(sum, _mm256_set1_epi16(1)), _mm256_setr_epi32(ysum, 0, 0, 0, 0, 0, 0, 0));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(bw[b].d) * a[b].d), _mm256_cvtepi32_ps(s32), acc);
  }
  return hsum(acc);
}
float dot_lmp2_q8_K(int64_t n, const void* w, const void* a) { return dot_q8_K<Lmp2>(n, w, a); }

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
