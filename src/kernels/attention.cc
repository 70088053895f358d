#include "kernels/attention.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/avx2_helpers.h"
#include "kernels/qdot.h"

namespace lmpress {
namespace {

constexpr int64_t kKeyBlock = 64;  // keys converted to f32 per step (K and V blocks: 2 × 16 KB at head_dim 64)
constexpr int64_t kTileRows = 16;  // query rows (heads × tokens) that share each converted block

// The sums of 8 vectors as one vector (lane i = Σ of a[i]).
__attribute__((target("avx2"))) inline __m256 sum8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Per-thread buffers, grown once and reused (no allocation per tile).
struct Scratch {
  std::vector<float> k, v, o, s, m, l;
};

// Cache rows j0..j0+count of one KV head into f32 [kKeyBlock, hd]; the rest
// of the block zeroed, so 8-key groups past the end read finite values.
__attribute__((target("avx2,f16c"))) void convert_block(KvType kv, const void* src, int64_t stride, int64_t count,
                                                        int64_t hd, float* dst) {
  for (int64_t j = 0; j < count; j++)
    for (int64_t d = 0; d < hd; d += 8) {
      const int64_t at = j * stride + d;
      _mm256_storeu_ps(dst + j * hd + d,
                       kv == KvType::F32 ? _mm256_loadu_ps(static_cast<const float*>(src) + at)
                                         : _mm256_cvtph_ps(_mm_loadu_si128(
                                               reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(src) + at))));
    }
  std::fill(dst + count * hd, dst + kKeyBlock * hd, 0.0f);
}

// Element i of a cache as float.
float cache_at(KvType kv, const void* c, int64_t i) {
  return kv == KvType::F32 ? static_cast<const float*>(c)[i] : f16_to_f32(static_cast<const uint16_t*>(c)[i]);
}

// The address of element `elem` of a cache.
const void* cache_row(KvType kv, const void* c, int64_t elem) {
  return static_cast<const uint8_t*>(c) + elem * kv_bytes(kv);
}

// o[0, 8·NV) = o · corr + Σ_j p[j] · v[j·ld .. + 8·NV), the NV vectors of o
// held in registers across the keys (NV a constant, so they stay there).
template <int NV>
__attribute__((target("avx2,fma"))) inline void accumulate_values(float* o, float corr, const float* p, const float* v,
                                                                  int64_t ld, int64_t count) {
  __m256 acc[NV];
  for (int i = 0; i < NV; i++) acc[i] = _mm256_mul_ps(_mm256_loadu_ps(o + 8 * i), _mm256_set1_ps(corr));
  for (int64_t j = 0; j < count; j++) {
    const __m256 pj = _mm256_broadcast_ss(p + j);
    for (int i = 0; i < NV; i++) acc[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + j * ld + 8 * i), acc[i]);
  }
  for (int i = 0; i < NV; i++) _mm256_storeu_ps(o + 8 * i, acc[i]);
}

// One tile: KV head kvh, tokens t0..t0+tokens-1, rows r = (token, head in group).
__attribute__((target("avx2,fma,f16c"))) void tile_avx2(const AttentionShape& s, KvType kv, const float* q, int64_t pos0,
                                                        const void* k, const void* v, float scale, float* out,
                                                        int64_t kvh, int64_t t0, int64_t tokens, Scratch& w) {
  const int64_t hd = s.head_dim, group = s.n_heads / s.n_kv_heads, R = tokens * group;
  w.k.resize(size_t(kKeyBlock * hd));
  w.v.resize(size_t(kKeyBlock * hd));
  w.o.assign(size_t(R * hd), 0.0f);
  w.s.resize(size_t(kKeyBlock));
  w.m.assign(size_t(R), -std::numeric_limits<float>::infinity());
  w.l.assign(size_t(R), 0.0f);
  const int64_t keys = pos0 + t0 + tokens;  // visible to the tile's last token
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t j0 = 0; j0 < keys; j0 += kKeyBlock) {
    const int64_t jn = std::min(kKeyBlock, keys - j0);
    convert_block(kv, cache_row(kv, k, j0 * s.kv_stride + kvh * hd), s.kv_stride, jn, hd, w.k.data());
    convert_block(kv, cache_row(kv, v, j0 * s.kv_stride + kvh * hd), s.kv_stride, jn, hd, w.v.data());
    for (int64_t r = 0; r < R; r++) {
      const int64_t t = t0 + r / group, h = kvh * group + r % group;
      const int64_t count = std::min(jn, pos0 + t + 1 - j0);  // causal: keys ≤ pos0 + t
      if (count <= 0) continue;
      const float* qr = q + t * s.q_stride + h * hd;
      float* sc = w.s.data();
      __m256 bmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
      for (int64_t j = 0; j < count; j += 8) {
        __m256 acc[8];
        for (auto& a : acc) a = _mm256_setzero_ps();
        for (int64_t d = 0; d < hd; d += 8) {
          const __m256 qv = _mm256_loadu_ps(qr + d);
          for (int i = 0; i < 8; i++) acc[i] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(&w.k[size_t((j + i) * hd + d)]), acc[i]);
        }
        const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(int(count - j)), lane));
        const __m256 sv = _mm256_blendv_ps(_mm256_set1_ps(-std::numeric_limits<float>::infinity()),
                                           _mm256_mul_ps(sum8(acc), _mm256_set1_ps(scale)), valid);
        _mm256_storeu_ps(sc + j, sv);
        bmax = _mm256_max_ps(bmax, sv);
      }
      const float m_old = w.m[size_t(r)], m_new = std::max(m_old, simd_avx2::hmax(bmax));
      const float corr = std::exp(m_old - m_new);  // 0 for the first block (m_old = −inf)
      __m256 psum = _mm256_setzero_ps();
      for (int64_t j = 0; j < count; j += 8) {
        const __m256 p = simd_avx2::exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + j), _mm256_set1_ps(m_new)));
        _mm256_storeu_ps(sc + j, p);
        psum = _mm256_add_ps(psum, p);
      }
      w.l[size_t(r)] = w.l[size_t(r)] * corr + simd_avx2::hsum(psum);
      w.m[size_t(r)] = m_new;
      // o = o · corr + Σ p_j v_j, 32 columns at a time held in registers.
      float* o = w.o.data() + r * hd;
      int64_t d = 0;
      for (; d + 32 <= hd; d += 32) accumulate_values<4>(o + d, corr, sc, w.v.data() + d, hd, count);
      for (; d < hd; d += 8) accumulate_values<1>(o + d, corr, sc, w.v.data() + d, hd, count);
    }
  }
  for (int64_t r = 0; r < R; r++) {
    const int64_t t = t0 + r / group, h = kvh * group + r % group;
    const __m256 inv = _mm256_set1_ps(1.0f / w.l[size_t(r)]);
    for (int64_t d = 0; d < hd; d += 8)
      _mm256_storeu_ps(out + t * s.out_stride + h * hd + d, _mm256_mul_ps(_mm256_loadu_ps(&w.o[size_t(r * hd + d)]), inv));
  }
}

__attribute__((target("avx2,fma"))) void exp_avx2(const float* x, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, simd_avx2::exp8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float tmp[8] = {};
    std::copy(x + i, x + n, tmp);
    _mm256_storeu_ps(tmp, simd_avx2::exp8(_mm256_loadu_ps(tmp)));
    std::copy(tmp, tmp + (n - i), y + i);
  }
}

}  // namespace

void attention_ref(const AttentionShape& s, KvType kv, const float* q, int64_t n, int64_t pos0, const void* k,
                   const void* v, float scale, float* out) {
  const int64_t hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
#pragma omp parallel
  {
    std::vector<float> sc(size_t(pos0 + n));
    std::vector<double> o(static_cast<size_t>(hd));
#pragma omp for collapse(2) schedule(static)
    for (int64_t t = 0; t < n; t++)
      for (int64_t h = 0; h < s.n_heads; h++) {
        const int64_t kvh = h / group, visible = pos0 + t + 1;
        const float* qr = q + t * s.q_stride + h * hd;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < visible; j++) {
          const int64_t row = j * s.kv_stride + kvh * hd;
          float d = 0;
          for (int64_t i = 0; i < hd; i++) d += qr[i] * cache_at(kv, k, row + i);
          sc[size_t(j)] = d * scale;
          mx = std::max(mx, sc[size_t(j)]);
        }
        double sum = 0;
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j < visible; j++) {
          const double p = std::exp(double(sc[size_t(j)] - mx));
          sum += p;
          const int64_t row = j * s.kv_stride + kvh * hd;
          for (int64_t i = 0; i < hd; i++) o[size_t(i)] += p * cache_at(kv, v, row + i);
        }
        for (int64_t i = 0; i < hd; i++) out[t * s.out_stride + h * hd + i] = float(o[size_t(i)] / sum);
      }
  }
}

void attention(const AttentionShape& s, KvType kv, const float* q, int64_t n, int64_t pos0, const void* k,
               const void* v, float scale, float* out) {
  if (!qdot_simd_active() || s.head_dim % 8 != 0) return attention_ref(s, kv, q, n, pos0, k, v, scale, out);
  const int64_t group = s.n_heads / s.n_kv_heads;
  const int64_t tokens = std::max<int64_t>(1, kTileRows / group);  // per tile
  const int64_t tiles = (n + tokens - 1) / tokens;
  // Later tokens see more keys: dynamic scheduling evens out the causal triangle.
#pragma omp parallel
  {
    static thread_local Scratch w;
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t kvh = 0; kvh < s.n_kv_heads; kvh++)
      for (int64_t i = 0; i < tiles; i++) {
        const int64_t t0 = i * tokens;
        tile_avx2(s, kv, q, pos0, k, v, scale, out, kvh, t0, std::min(tokens, n - t0), w);
      }
  }
}

KvType parse_kv_type(const std::string& name) {
  if (name == "f16") return KvType::F16;
  if (name == "f32") return KvType::F32;
  fail("unknown KV-cache type '{}' (f16 or f32)", name);
}

void exp_f32(const float* x, int64_t n, float* y) {
  if (qdot_simd_active()) return exp_avx2(x, n, y);
  for (int64_t i = 0; i < n; i++) y[i] = x[i] < -87.33654f ? 0.0f : std::exp(std::min(x[i], 88.0f));
}

}  // namespace lmpress
