// AVX2 dot product of a 2:4-sparse F16 row with f32 activations. Per 8
// weights (two groups of 4, one position byte): their 4 kept values (8 bytes
// of a 16-byte load) are moved to their positions, the other lanes zeroed, by
// one pshufb with a control from a table indexed by the position byte and by
// which half of the load holds the values; then widened (F16C) and multiplied
// with the 8 activations. No gathers, no permutes across lanes. Only called
// after simd_avx2::available().
#if defined(__x86_64__)  // x86 only: on other architectures this file is empty
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "kernels/avx2_helpers.h"
#include "kernels/qdot.h"
#include "kernels/sparse24.h"

namespace lmpress::simd_avx2 {

namespace {

// t[half][b]: for position byte b (groups 2j, 2j+1: low and high nibble, each
// two 2-bit positions), the pshufb control that puts kept value k of the pair
// (bytes 8·half + 2k, +1 of the load) at its lane and zeroes the rest.
struct ExpandControl {
  alignas(16) std::array<std::array<std::array<uint8_t, 16>, 256>, 2> t;
  ExpandControl() {
    for (int half = 0; half < 2; half++)
      for (int b = 0; b < 256; b++) {
        auto& c = t[half][b];
        c.fill(0x80);
        for (int g = 0; g < 2; g++) {
          const int nib = b >> (4 * g) & 15;
          for (int k = 0; k < 2; k++) {
            const int lane = 4 * g + (k ? nib >> 2 : nib & 3);
            const int src = 8 * half + 2 * (2 * g + k);
            c[2 * lane] = uint8_t(src);
            c[2 * lane + 1] = uint8_t(src + 1);
          }
        }
      }
  }
};
const ExpandControl kExpand;

__attribute__((target("avx2,fma,f16c"))) inline __m256 expand8(__m128i vals, int half, uint8_t b) {
  const __m128i ctl = _mm_load_si128(reinterpret_cast<const __m128i*>(kExpand.t[half][b].data()));
  return _mm256_cvtph_ps(_mm_shuffle_epi8(vals, ctl));
}

// q[c][b]: for Q8_0_2OF4, position byte b at byte c of the block's idx (groups
// 2c, 2c+1), as a pshufb control for 8 int8 weights taken from the block's 16
// kept values (kept value k of the pair is value 4c + k).
struct ExpandControlQ8 {
  alignas(8) std::array<std::array<uint64_t, 256>, 4> q;
  ExpandControlQ8() {
    for (int c = 0; c < 4; c++)
      for (int b = 0; b < 256; b++) {
        uint8_t ctl[8];
        std::fill(ctl, ctl + 8, uint8_t(0x80));
        for (int g = 0; g < 2; g++) {
          const int nib = b >> (4 * g) & 15;
          ctl[4 * g + (nib & 3)] = uint8_t(4 * c + 2 * g);
          ctl[4 * g + (nib >> 2)] = uint8_t(4 * c + 2 * g + 1);
        }
        std::memcpy(&q[c][b], ctl, 8);
      }
  }
};
const ExpandControlQ8 kExpandQ8;

}  // namespace

// Q8_0_2OF4 with Q8_0 activations: the block's 16 kept int8 values,
// broadcast to both 128-bit lanes, are expanded to the 32 dense weights by one
// vpshufb (lane 0: weights 0-15, lane 1: 16-31), then multiplied with the
// activations as in the dense Q8_0 kernel.
__attribute__((target("avx2,fma,f16c"))) float dot_2of4_q8_0_q8_0(int64_t n, const void* w, const void* act) {
  const auto* b = static_cast<const BlockQ8_0_2of4*>(w);
  const auto* a = static_cast<const BlockQ8_0*>(act);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / 32; i++) {
    const uint8_t* idx = b[i].idx;
    const __m256i ctl =
        _mm256_setr_epi64x(int64_t(kExpandQ8.q[0][idx[0]]), int64_t(kExpandQ8.q[1][idx[1]]),
                           int64_t(kExpandQ8.q[2][idx[2]]), int64_t(kExpandQ8.q[3][idx[3]]));
    const __m256i vals = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].v)));
    const __m256i x = _mm256_shuffle_epi8(vals, ctl);
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d) * h2f(a[i].d)), dot_i8(x, y), acc);
  }
  return hsum(acc);
}

__attribute__((target("avx2,fma,f16c"))) float dot_2of4_f16_f32(int64_t n, const void* w, const float* x) {
  const auto* b = static_cast<const BlockF16_2of4*>(w);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
         acc3 = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / 32; i++, x += 32) {
    const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].v));      // groups 0-3
    const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].v + 8));  // groups 4-7
    acc0 = _mm256_fmadd_ps(expand8(v0, 0, b[i].idx[0]), _mm256_loadu_ps(x), acc0);
    acc1 = _mm256_fmadd_ps(expand8(v0, 1, b[i].idx[1]), _mm256_loadu_ps(x + 8), acc1);
    acc2 = _mm256_fmadd_ps(expand8(v1, 0, b[i].idx[2]), _mm256_loadu_ps(x + 16), acc2);
    acc3 = _mm256_fmadd_ps(expand8(v1, 1, b[i].idx[3]), _mm256_loadu_ps(x + 24), acc3);
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
  return hsum(s);
}

}  // namespace lmpress::simd_avx2
#endif  // defined(__x86_64__)
