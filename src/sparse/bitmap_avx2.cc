// AVX2 dot product of a bitmap-sparse F16 row with f32 activations. Per 8
// weights (one mask byte): the next 8 stored values are loaded and widened
// (F16C), moved to the lanes of their kept positions by permutevar8x32 with
// an index from a 256-entry table, the other lanes zeroed by a blend on the
// index's sign bit, then multiplied with the 8 activations; the value pointer
// advances by the byte's popcount. No gathers, no branches on the data. Only
// called after simd_avx2::available().
#include <immintrin.h>

#include <array>
#include <cstring>

#include "kernels/qdot.h"
#include "sparse/bitmap.h"

namespace lmpress::simd_avx2 {

namespace {

// For a mask byte: lane j takes stored value k (the k-th kept weight of the
// byte) when bit j is set; otherwise the sign bit marks the lane for zeroing.
struct ExpandIndex {
  alignas(32) std::array<std::array<int32_t, 8>, 256> t;
  ExpandIndex() {
    for (int m = 0; m < 256; m++)
      for (int j = 0, k = 0; j < 8; j++) t[m][j] = (m >> j & 1) ? k++ : int32_t(0x80000000u);
  }
};
const ExpandIndex kExpand;

__attribute__((target("avx2,fma,f16c,popcnt"))) inline __m256 expand8(uint8_t m, const uint8_t*& v) {
  const __m256i idx = _mm256_load_si256(reinterpret_cast<const __m256i*>(kExpand.t[m].data()));
  const __m256 vals = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v)));
  v += 2 * _mm_popcnt_u32(m);
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(vals, idx), _mm256_setzero_ps(), _mm256_castsi256_ps(idx));
}

}  // namespace

__attribute__((target("avx2,fma,f16c,popcnt"))) float dot_bitmap_f16_f32(int64_t n, const void* row, const float* x) {
  const auto* masks = static_cast<const uint8_t*>(row);
  const uint8_t* v = masks + n / 8;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= n / 8; k += 8, x += 64) {
    uint64_t m;
    std::memcpy(&m, masks + k, 8);
    for (int j = 0; j < 8; j += 2) {
      acc0 = _mm256_fmadd_ps(expand8(uint8_t(m >> (8 * j)), v), _mm256_loadu_ps(x + 8 * j), acc0);
      acc1 = _mm256_fmadd_ps(expand8(uint8_t(m >> (8 * j + 8)), v), _mm256_loadu_ps(x + 8 * j + 8), acc1);
    }
  }
  for (; k < n / 8; k++, x += 8) acc0 = _mm256_fmadd_ps(expand8(masks[k], v), _mm256_loadu_ps(x), acc0);
  const __m256 s = _mm256_add_ps(acc0, acc1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

}  // namespace lmpress::simd_avx2
