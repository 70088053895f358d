#include "sparse/q8_0_2of4x8.h"

#include <immintrin.h>

#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/avx2_helpers.h"
#include "kernels/qdot.h"
#include "sparse/sparse24.h"

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
  if (t.dtype != DType::Q8_0 || t.shape.size() != 2 || t.rows() % 8 || t.cols() % 32)
    fail("internal: {} cannot be repacked as Q8_0_2of4_x8", t.name);
  const int64_t rows = t.rows(), nb = t.cols() / 32;
  auto buf = std::make_shared<std::vector<uint8_t>>(size_t(rows / 8 * nb) * sizeof(BlockQ8_0_2of4x8));
  const auto* src = reinterpret_cast<const BlockQ8_0*>(t.data);
  auto* dst = reinterpret_cast<BlockQ8_0_2of4x8*>(buf->data());
  bool ok = true;
#pragma omp parallel for schedule(static) reduction(&& : ok)
  for (int64_t g = 0; g < rows / 8; g++) ok = pack_q8_0_2of4x8(src + g * 8 * nb, t.cols(), dst + g * nb) && ok;
  if (!ok) fail("internal: {} is not 2:4-sparse", t.name);
  Tensor out = t;
  out.dtype = DType::Q8_0_2OF4_X8;
  out.data = buf->data();
  out.nbytes = buf->size();
  out.owner = buf;
  return out;
}

std::vector<uint8_t> unpack_q8_0_2of4x8(const Tensor& t) {
  const int64_t rows = t.rows(), nb = t.cols() / 32;
  std::vector<uint8_t> out(size_t(rows * nb) * sizeof(BlockQ8_0));
  const auto* src = reinterpret_cast<const BlockQ8_0_2of4x8*>(t.data);
  auto* dst = reinterpret_cast<BlockQ8_0*>(out.data());
  for (int64_t r = 0; r < rows; r++) unpack_q8_0_2of4x8_row(src + (r / 8) * nb, t.cols(), int(r % 8), dst + r * nb);
  return out;
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

namespace {

__attribute__((target("avx2,fma,f16c"))) void gemv_q8_0_2of4x8_avx2(int64_t cols, const BlockQ8_0_2of4x8* g,
                                                                   const BlockQ8_0* a, float* out) {
  const __m256i shifts = _mm256_setr_epi64x(0, 2, 4, 6);
  const __m256i three = _mm256_set1_epi8(3);
  // Slots 2 and 3 of each row belong to the second group of 4 columns.
  const __m256i base = _mm256_set1_epi32(0x04040000);
  const __m256i ones = _mm256_set1_epi16(1);
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
      const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
      dot = _mm256_add_epi32(dot, _mm256_madd_epi16(p16, ones));
    }
    const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[b].d))),
                                   _mm256_set1_ps(simd_avx2::h2f(a[b].d)));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc);
  }
  _mm256_storeu_ps(out, acc);
}

}  // namespace

void gemv_q8_0_2of4x8(int64_t cols, const BlockQ8_0_2of4x8* g, const BlockQ8_0* a, float* out) {
  if (qdot_simd_active()) return gemv_q8_0_2of4x8_avx2(cols, g, a, out);
  gemv_q8_0_2of4x8_ref(cols, g, a, out);
}

}  // namespace lmpress
