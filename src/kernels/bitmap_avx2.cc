// AVX2 dot product of a bitmap-sparse F16 row with f32 activations. Per 8
// weights (one mask byte): the next 8 stored values (16 bytes) are moved to
// the lanes of their kept positions, the other lanes zeroed, by one pshufb
// with a control from a 256-entry table, then widened (F16C) and multiplied
// with the 8 activations. No gathers, no branches on the data. Only called
// after simd_avx2::available().
#if defined(__x86_64__)  // x86 only: on other architectures this file is empty
#include <immintrin.h>

#include <array>
#include <cstring>

#include "kernels/avx2_helpers.h"
#include "kernels/qdot.h"
#include "kernels/bitmap.h"

namespace lmpress::simd_avx2 {

namespace {

// For a mask byte: a pshufb control that moves the k-th stored value (the
// k-th kept weight of the byte, 2 bytes) to lane j when bit j is set, and
// zeroes lane j (control byte 0x80) when it is not.
struct ExpandControl {
  alignas(16) std::array<std::array<uint8_t, 16>, 256> t;
  ExpandControl() {
    for (int m = 0; m < 256; m++)
      for (int j = 0, k = 0; j < 8; j++) {
        const bool kept = m >> j & 1;
        t[m][2 * j] = kept ? uint8_t(2 * k) : 0x80;
        t[m][2 * j + 1] = kept ? uint8_t(2 * k + 1) : 0x80;
        k += kept;
      }
  }
};
const ExpandControl kExpand;

// The 8 weights of mask byte m, whose stored values start at v, as floats.
__attribute__((target("avx2,fma,f16c"))) inline __m256 expand8(uint8_t m, const uint8_t* v) {
  const __m128i vals = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v));
  const __m128i ctl = _mm_load_si128(reinterpret_cast<const __m128i*>(kExpand.t[m].data()));
  return _mm256_cvtph_ps(_mm_shuffle_epi8(vals, ctl));
}

}  // namespace

__attribute__((target("avx2,fma,f16c,popcnt"))) float dot_bitmap_f16_f32(int64_t n, const void* row, const float* x) {
  const auto* masks = static_cast<const uint8_t*>(row);
  const uint8_t* v = masks + n / 8;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t k = 0;
  for (; k + 8 <= n / 8; k += 8, x += 64) {
    uint64_t m;
    std::memcpy(&m, masks + k, 8);
    // Where each byte's values start: popcounts of the lower bytes, so the 8
    // loads do not wait on one another.
    for (int j = 0; j < 8; j++) {
      const uint8_t* vj = v + 2 * _mm_popcnt_u64(m & ((uint64_t(1) << (8 * j)) - 1));
      acc[j % 4] = _mm256_fmadd_ps(expand8(uint8_t(m >> (8 * j)), vj), _mm256_loadu_ps(x + 8 * j), acc[j % 4]);
    }
    v += 2 * _mm_popcnt_u64(m);
  }
  for (; k < n / 8; k++, x += 8) {
    acc[0] = _mm256_fmadd_ps(expand8(masks[k], v), _mm256_loadu_ps(x), acc[0]);
    v += 2 * _mm_popcnt_u32(masks[k]);
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
  return hsum(s);
}

}  // namespace lmpress::simd_avx2
#endif  // defined(__x86_64__)
