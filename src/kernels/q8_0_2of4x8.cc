#include "kernels/q8_0_2of4x8.h"

#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/interleave.h"
#include "kernels/qdot.h"
#include "kernels/sparse24.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/avx2_helpers.h"
#endif

namespace lmpress {

namespace {

// Byte i of a vector: row i / 4, kept slot i % 4 (see BlockQ8_0_2of4x8).
int position(const BlockQ8_0_2of4x8& g, int j, int i) { return int(g.pos[j] >> (8 * (i % 8) + 2 * (i / 8)) & 3); }
// Column (0..31) of byte i of vector j.
int column(const BlockQ8_0_2of4x8& g, int j, int i) { return 8 * j + 4 * (i % 4 / 2) + position(g, j, i); }

}  // namespace

bool pack_q8_0_2of4x8(const BlockQ8_0* rows, int64_t cols, BlockQ8_0_2of4x8* out) {
  const int64_t nb = cols / 32;
  for (int64_t b = 0; b < nb; b++) {
    BlockQ8_0_2of4x8& o = out[b];
    std::memset(&o, 0, sizeof(o));
    for (int r = 0; r < 8; r++) {
      const BlockQ8_0& s = rows[r * nb + b];
      o.d[r] = s.d;
      for (int g = 0; g < 8; g++) {
        const int8_t* q = s.qs + 4 * g;
        const bool nonzero[4] = {q[0] != 0, q[1] != 0, q[2] != 0, q[3] != 0};
        int pos[2];
        uint8_t nibble;
        if (!two_of_four_positions(nonzero, pos, nibble)) return false;
        const int j = g / 2;
        for (int slot = 0; slot < 2; slot++) {
          const int i = 4 * r + 2 * (g % 2) + slot;
          o.v[j][i] = q[pos[slot]];
          o.pos[j] |= uint64_t(pos[slot]) << (8 * (i % 8) + 2 * (i / 8));
        }
      }
    }
  }
  return true;
}

void unpack_q8_0_2of4x8_row(const BlockQ8_0_2of4x8* group, int64_t cols, int r, BlockQ8_0* out) {
  for (int64_t b = 0; b < cols / 32; b++) {
    const BlockQ8_0_2of4x8& g = group[b];
    BlockQ8_0& o = out[b];
    o.d = g.d[r];
    std::memset(o.qs, 0, sizeof(o.qs));
    for (int j = 0; j < 4; j++)
      for (int i = 4 * r; i < 4 * r + 4; i++) o.qs[column(g, j, i)] = g.v[j][i];
  }
}

void dequantize_q8_0_2of4x8_row(const BlockQ8_0_2of4x8* group, int64_t cols, int r, float* out) {
  for (int64_t b = 0; b < cols / 32; b++, out += 32) {
    const BlockQ8_0_2of4x8& g = group[b];
    const float d = f16_to_f32(g.d[r]);
    std::memset(out, 0, 32 * sizeof(float));
    for (int j = 0; j < 4; j++)
      for (int i = 4 * r; i < 4 * r + 4; i++) out[column(g, j, i)] = d * float(g.v[j][i]);
  }
}

Tensor repack_q8_0_2of4x8(const Tensor& t) {
  return repack_x8<BlockQ8_0, BlockQ8_0_2of4x8>(t, DType::Q8_0, DType::Q8_0_2OF4_X8, pack_q8_0_2of4x8);
}

std::vector<uint8_t> unpack_q8_0_2of4x8(const Tensor& t) {
  return unpack_x8<BlockQ8_0, BlockQ8_0_2of4x8>(t, unpack_q8_0_2of4x8_row);
}

void gemv_q8_0_2of4x8_ref(int64_t cols, const BlockQ8_0_2of4x8* g, const BlockQ8_0* a, float* out) {
  float acc[8] = {};
  for (int64_t b = 0; b < cols / 32; b++) {
    int32_t dot[8] = {};
    for (int j = 0; j < 4; j++)
      for (int i = 0; i < 32; i++) dot[i / 4] += int32_t(g[b].v[j][i]) * a[b].qs[column(g[b], j, i)];
    for (int r = 0; r < 8; r++) acc[r] += f16_to_f32(g[b].d[r]) * f16_to_f32(a[b].d) * float(dot[r]);
  }
  std::memcpy(out, acc, sizeof(acc));
}

#if defined(__x86_64__)
namespace {

__attribute__((target("avx2,fma,f16c"))) void gemv_q8_0_2of4x8_avx2(int64_t cols, const BlockQ8_0_2of4x8* g,
                                                                   const BlockQ8_0* a, float* out) {
  const __m256i shifts = _mm256_setr_epi64x(0, 2, 4, 6);
  const __m256i three = _mm256_set1_epi8(3);
  // Slots 2 and 3 of each row belong to the second group of 4 columns.
  const __m256i base = _mm256_set1_epi32(0x04040000);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / 32; b++) {
    __m256i dot = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
      int64_t p, x8;
      std::memcpy(&p, &g[b].pos[j], 8);
      std::memcpy(&x8, a[b].qs + 8 * j, 8);
      const __m256i ctl =
          _mm256_add_epi8(_mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x(p), shifts), three), base);
      // Each 128-bit lane holds the block's 8 activations of this vector twice;
      // the control picks, for every kept weight, the activation it multiplies.
      const __m256i x = _mm256_shuffle_epi8(_mm256_set1_epi64x(x8), ctl);
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[b].v[j]));
      dot = _mm256_add_epi32(dot, simd_avx2::dot_i8_lanes(w, x));
    }
    acc = simd_avx2::fma_row_scales(g[b].d, a[b].d, dot, acc);
  }
  _mm256_storeu_ps(out, acc);
}

}  // namespace
#endif  // defined(__x86_64__)

X8Kernels q8_0_2of4x8_kernels() {
  using G = BlockQ8_0_2of4x8;
  using A = BlockQ8_0;
  // One-token kernel only: gathering the kept activations costs what 4 tokens would share.
#if defined(__x86_64__)
  if (qdot_simd_active()) return {x8_gemv<G, A, gemv_q8_0_2of4x8_avx2>, nullptr};
#endif
  return {x8_gemv<G, A, gemv_q8_0_2of4x8_ref>, nullptr};
}

void gemv_q8_0_2of4x8(int64_t cols, const BlockQ8_0_2of4x8* g, const BlockQ8_0* a, float* out) {
  q8_0_2of4x8_kernels().gemv(cols, g, a, nullptr, out);
}

}  // namespace lmpress
