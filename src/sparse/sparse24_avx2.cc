// AVX2 dot product of a 2:4-sparse F16 row with f32 activations. Per 8
// weights (two groups of 4, one position byte): their 4 kept values (8 bytes
// of a 16-byte load) are moved to their positions, the other lanes zeroed, by
// one pshufb with a control from a table indexed by the position byte and by
// which half of the load holds the values; then widened (F16C) and multiplied
// with the 8 activations. No gathers, no permutes across lanes. Only called
// after simd_avx2::available().
#include <immintrin.h>

#include <array>

#include "kernels/qdot.h"
#include "sparse/sparse24.h"

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

}  // namespace

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
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

}  // namespace lmpress::simd_avx2
