// AVX2 versions of the qdot kernels. Compiled with per-function target
// attributes (the build does not assume AVX2) and only called after
// available() says the CPU and OS support it.
#if defined(__x86_64__)  // x86 only: on other architectures this file is empty
#include <immintrin.h>

#include <cstring>

#include "core/cpu_isa.h"
#include "core/fp16.h"
#include "kernels/avx2_helpers.h"
#include "kernels/qdot.h"
#include "kernels/blocks.h"

namespace lmpress::simd_avx2 {

bool available() { return cpu_isa().avx2; }


// 0xFF in byte j where bit j of a Q5 block's 32-bit qh is set.
__attribute__((target("avx2"))) inline __m256i q5_high_bits(const uint8_t* qh4) {
  // Byte j of the expansion selects bit j of the 32-bit high-bit mask.
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i bit = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  uint32_t qh;
  std::memcpy(&qh, qh4, 4);
  return _mm256_cmpeq_epi8(_mm256_or_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(int(qh)), shuf), bit),
                           _mm256_set1_epi64x(-1));
}

// A block's 32 nibbles as bytes 0..15 in element order (low nibbles, then high).
__attribute__((target("avx2"))) inline __m256i nibbles(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), low), _mm_and_si128(q, low));
}

// Σ_i x_i·y_i for unsigned x (≤ 127) and signed y, in 8 int32 lanes.
__attribute__((target("avx2"))) inline __m256i dot_u8_i8(__m256i x, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
}

__attribute__((target("avx2,fma,f16c"))) float dot_q4_0_q8_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ4_0*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  __m256 acc = _mm256_setzero_ps();
  const __m256i eight = _mm256_set1_epi8(8);
  for (int64_t b = 0; b < n / 32; b++) {
    const __m256i x = _mm256_sub_epi8(nibbles(bw[b].qs), eight);
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const __m256 d = _mm256_set1_ps(h2f(bw[b].d) * h2f(a[b].d));
    acc = _mm256_fmadd_ps(d, dot_i8(x, y), acc);
  }
  return hsum(acc);
}

__attribute__((target("avx2,fma,f16c"))) float dot_q8_0_q8_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ8_0*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / 32; b++) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[b].qs));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const __m256 d = _mm256_set1_ps(h2f(bw[b].d) * h2f(a[b].d));
    acc = _mm256_fmadd_ps(d, dot_i8(x, y), acc);
  }
  return hsum(acc);
}

__attribute__((target("avx2,fma,f16c"))) float dot_q5_0_q8_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockQ5_0*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / 32; b++) {
    // Without the 5th bit the value is nibble − 16: as int8, nibble | 0xF0.
    const __m256i x =
        _mm256_or_si256(nibbles(bw[b].qs), _mm256_andnot_si256(q5_high_bits(bw[b].qh), _mm256_set1_epi8(char(0xF0))));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const __m256 d = _mm256_set1_ps(h2f(bw[b].d) * h2f(a[b].d));
    acc = _mm256_fmadd_ps(d, dot_i8(x, y), acc);
  }
  return hsum(acc);
}

// Q4_1 and Q5_1 (unsigned values q, w = d·q + m): Σ w·x = d·da·Σ q·a + m·da·Σ a.
template <bool kFive, class Block>
__attribute__((target("avx2,fma,f16c"))) float dot_min_q8_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const Block*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  __m256 acc = _mm256_setzero_ps(), acc_m = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t b = 0; b < n / 32; b++) {
    __m256i x = nibbles(bw[b].qs);
    if constexpr (kFive) x = _mm256_or_si256(x, _mm256_and_si256(q5_high_bits(bw[b].qh), _mm256_set1_epi8(0x10)));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const float da = h2f(a[b].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(bw[b].d) * da), _mm256_cvtepi32_ps(dot_u8_i8(x, y)), acc);
    acc_m = _mm256_fmadd_ps(_mm256_set1_ps(h2f(bw[b].m) * da), _mm256_cvtepi32_ps(dot_u8_i8(ones, y)), acc_m);
  }
  return hsum(_mm256_add_ps(acc, acc_m));
}

float dot_q4_1_q8_0(int64_t n, const void* w, const void* a) { return dot_min_q8_0<false, BlockQ4_1>(n, w, a); }
float dot_q5_1_q8_0(int64_t n, const void* w, const void* a) { return dot_min_q8_0<true, BlockQ5_1>(n, w, a); }

// IQ4_NL: the nibbles index 16 int8 levels (one byte shuffle per 32 values).
__attribute__((target("avx2,fma,f16c"))) float dot_iq4_nl_q8_0(int64_t n, const void* w, const void* act) {
  const auto* bw = static_cast<const BlockIQ4_NL*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues));
  const __m256i table = _mm256_set_m128i(levels, levels);
  // Two blocks a step into two sums: one chain of FMAs would leave a core short of the memory's pace.
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= n / 32; b += 2) {
    prefetch_ahead<2 * sizeof(BlockIQ4_NL)>(bw + b);
    const __m256i x0 = _mm256_shuffle_epi8(table, nibbles(bw[b].qs));
    const __m256i x1 = _mm256_shuffle_epi8(table, nibbles(bw[b + 1].qs));
    const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b + 1].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(bw[b].d) * h2f(a[b].d)), dot_i8(x0, y0), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(bw[b + 1].d) * h2f(a[b + 1].d)), dot_i8(x1, y1), acc1);
  }
  for (; b < n / 32; b++) {
    const __m256i x = _mm256_shuffle_epi8(table, nibbles(bw[b].qs));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(bw[b].d) * h2f(a[b].d)), dot_i8(x, y), acc0);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

__attribute__((target("avx2,fma,f16c"))) float dot_f16_f32(int64_t n, const void* w, const float* x) {
  const auto* h = static_cast<const uint16_t*>(w);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    prefetch_ahead<32>(h + i);
    const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
    const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i + 8)));
    acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), acc1);
  }
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; i++) s += f16_to_f32(h[i]) * x[i];
  return s;
}

// 8 bf16 values as floats: the 16 bits become the top of each f32.
__attribute__((target("avx2"))) inline __m256 bf16x8(const uint16_t* h) {
  const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

__attribute__((target("avx2,fma,f16c"))) float dot_bf16_f32(int64_t n, const void* w, const float* x) {
  const auto* h = static_cast<const uint16_t*>(w);
  // Two accumulators, as for F16: one FMA chain (4 cycles per 16 bytes) would
  // cap a core at about the memory's per-core share.
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    prefetch_ahead<32>(h + i);
    acc0 = _mm256_fmadd_ps(bf16x8(h + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(bf16x8(h + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
  }
  if (i + 8 <= n) acc0 = _mm256_fmadd_ps(bf16x8(h + i), _mm256_loadu_ps(x + i), acc0), i += 8;
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; i++) s += bits_to_f32(uint32_t(h[i]) << 16) * x[i];
  return s;
}

// quantize_row_q8_0 with the scalar version's exact arithmetic: the same
// amax, d = amax / 127, id = 1 / d, round half to even.
__attribute__((target("avx2,fma,f16c"))) void quantize_q8_0(const float* x, int64_t n, BlockQ8_0* y) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < n / 32; b++, x += 32) {
    __m256 v[4], m = _mm256_setzero_ps();
    for (int j = 0; j < 4; j++) {
      v[j] = _mm256_loadu_ps(x + 8 * j);
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[j]));
    }
    const float d = hmax(m) / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0 ? 1.0f / d : 0.0f);
    y[b].d = f32_to_f16(d);
    __m256i q[4];
    for (int j = 0; j < 4; j++)
      q[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[j], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    // packs work within 128-bit lanes: the permute restores element order.
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), _mm256_permutevar8x32_epi32(p, order));
  }
}

}  // namespace lmpress::simd_avx2
#endif  // defined(__x86_64__)
