// AVX2 dot product of a 2:4-sparse F16 row with f32 activations. Per 32
// weights: the 16 kept values widened by F16C, and the activations they meet
// selected from registers by permutevar8x32 (no gathers): each 8-activation
// register holds 2 groups, whose 4 positions come from a 256-entry table
// indexed by the position byte. Only called after simd_avx2::available().
#include <immintrin.h>

#include <array>

#include "kernels/qdot.h"
#include "sparse/sparse24.h"

namespace lmpress::simd_avx2 {

namespace {

// For a position byte (groups 2j, 2j+1): the 4 lanes, within the 8 activations
// of those groups, that the group's kept values multiply.
struct Lanes {
  std::array<std::array<int32_t, 4>, 256> t;
  Lanes() {
    for (int b = 0; b < 256; b++) t[b] = {b & 3, (b >> 2) & 3, 4 + ((b >> 4) & 3), 4 + ((b >> 6) & 3)};
  }
};
const Lanes kLanes;

}  // namespace

__attribute__((target("avx2,fma,f16c"))) float dot_2of4_f16_f32(int64_t n, const void* w, const float* x) {
  const auto* b = static_cast<const BlockF16_2of4*>(w);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / 32; i++, x += 32) {
    const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].v)));
    const __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].v + 8)));
    // Lanes 0-3 select from activations 0-7 (groups 0, 1), lanes 4-7 from 8-15 (groups 2, 3); likewise 16-31.
    const __m256i i0 = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(kLanes.t[b[i].idx[1]].data()),
                                           reinterpret_cast<const __m128i*>(kLanes.t[b[i].idx[0]].data()));
    const __m256i i1 = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(kLanes.t[b[i].idx[3]].data()),
                                           reinterpret_cast<const __m128i*>(kLanes.t[b[i].idx[2]].data()));
    const __m256 a0 = _mm256_blend_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(x), i0),
                                      _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + 8), i0), 0xF0);
    const __m256 a1 = _mm256_blend_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(x + 16), i1),
                                      _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + 24), i1), 0xF0);
    acc0 = _mm256_fmadd_ps(v0, a0, acc0);
    acc1 = _mm256_fmadd_ps(v1, a1, acc1);
  }
  const __m256 s = _mm256_add_ps(acc0, acc1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

}  // namespace lmpress::simd_avx2
