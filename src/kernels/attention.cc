#include "kernels/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/kivi.h"
#include "kernels/qdot.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/avx2_helpers.h"
#endif

namespace lmpress {
namespace {

// Position j's values elem..elem+n-1 of K (`key`) or V as floats, wherever
// the cache keeps them (kv_types.h, KvPages), for a KIVI query whose boundary
// is `boundary`.
void cached_values(const KvCacheSpec& kv, bool key, const KvPages& c, int64_t stride, int64_t j, int64_t elem,
                   int64_t n, float* out, int64_t boundary = 0) {
  const KvType t = key ? kv.k : kv.v;
  const int64_t ps = c.page_size;
  const auto* page = static_cast<const uint8_t*>((key ? c.k : c.v)[j / ps]);
  if (!kv.kivi()) {
    kv_row_to_f32(t, page + kv_row_bytes(t, (j % ps) * stride + elem), n, out);
    return;
  }
  if (j >= boundary && j >= c.fresh_from) {
    std::copy_n((key ? c.k_fresh : c.v_fresh) + (j - c.fresh_from) * stride + elem, n, out);
    return;
  }
  if (j >= boundary) {
    const uint16_t* row = (key ? c.k_staged : c.v_staged) + (j - c.staged_from) * stride;
    for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(row[elem + i]);
    return;
  }
  const int bits = kv_type_info(t).bits;
  const int64_t G = kv.group, chunk = kv.kivi_chunk_bytes(t);
  if (key) {
    const uint8_t* group = page + ((j % ps) / G) * kv.key_group_bytes(stride);
    for (int64_t i = 0; i < n; i++) kivi_dequantize(bits, group + (elem + i) * chunk, G, j % G, 1, out + i);
  } else {
    const uint8_t* row = page + (j % ps) * kv.row_bytes(t, stride);
    for (int64_t i = 0; i < n; i += G) kivi_dequantize(bits, row + (elem + i) / G * chunk, G, 0, G, out + i);
  }
}

// The tiled kernel is AVX2; elsewhere attention() runs attention_ref.
#if defined(__x86_64__)
constexpr int64_t kKeyBlock = 64;  // keys converted to f32 per step (K and V blocks: 2 × 16 KB at head_dim 64)
constexpr int64_t kTileRows = 64;  // query rows (heads × tokens) that share each converted block

// Per-thread buffers, grown once and reused (no allocation per tile).
struct Scratch {
  std::vector<float> kt, v, o, s, m, l, rows;
  const void* krow[kKeyBlock];
  const void* vrow[kKeyBlock];
};

// 8 cached values from `at` of an f32 or f16 row as floats.
__attribute__((target("avx2,f16c"))) inline __m256 load8(KvType kv, const void* c, int64_t at) {
  if (kv == KvType::F32) return _mm256_loadu_ps(static_cast<const float*>(c) + at);
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(c) + at)));
}

// Values: one KV head's part of cache rows rows[0..count-1] into f32
// [kKeyBlock][hd]; rows past count zero.
__attribute__((target("avx2,f16c"))) void convert_values(KvType kv, const void* const* rows, int64_t count,
                                                          int64_t hd, float* dst) {
  if (kv == KvType::F32 || kv == KvType::F16) {
    for (int64_t j = 0; j < count; j++)
      for (int64_t d = 0; d < hd; d += 8) _mm256_storeu_ps(dst + j * hd + d, load8(kv, rows[j], d));
  } else {
    for (int64_t j = 0; j < count; j++) kv_row_to_f32(kv, rows[j], hd, dst + j * hd);
  }
  std::fill(dst + count * hd, dst + kKeyBlock * hd, 0.0f);
}

// Keys, transposed: kt[d][j] = key j's dimension d, keys past count zero, so
// that 8 keys' scores accumulate in one vector (no horizontal sums). Other
// types than f32 and f16 are first converted into `tmp` ([kKeyBlock][hd]).
__attribute__((target("avx2,f16c"))) void convert_keys(KvType kv, const void* const* rows, int64_t count, int64_t hd,
                                                        float* kt, float* tmp) {
  const void* converted[kKeyBlock];
  if (kv != KvType::F32 && kv != KvType::F16) {
    for (int64_t j = 0; j < count; j++) {
      kv_row_to_f32(kv, rows[j], hd, tmp + j * hd);
      converted[j] = tmp + j * hd;
    }
    rows = converted;
    kv = KvType::F32;
  }
  for (int64_t j0 = 0; j0 < kKeyBlock; j0 += 8)
    for (int64_t d0 = 0; d0 < hd; d0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; i++) r[i] = j0 + i < count ? load8(kv, rows[j0 + i], d0) : _mm256_setzero_ps();
      simd_avx2::transpose8(r);
      for (int i = 0; i < 8; i++) _mm256_storeu_ps(kt + (d0 + i) * kKeyBlock + j0, r[i]);
    }
}

// A KIVI cache's keys kvh·hd.. of positions j0..j0+jn-1 as read by queries
// whose boundary is `boundary`, transposed into kt as convert_keys does: key
// groups decoded channel by channel straight into kt's rows, f16 and f32 rows
// transposed one by one.
void convert_keys_kivi(const KvCacheSpec& kv, const KvPages& c, int64_t stride, int64_t kvh, int64_t hd, int64_t j0,
                       int64_t jn, int64_t boundary, float* kt) {
  const int bits = kv_type_info(kv.k).bits;
  const int64_t G = kv.group, chunk = kv.kivi_chunk_bytes(kv.k), ps = c.page_size;
  const int64_t qend = std::min(j0 + jn, boundary);
  for (int64_t j = j0; j < qend;) {
    const int64_t end = std::min(qend, (j / G + 1) * G);
    const uint8_t* group = static_cast<const uint8_t*>(c.k[j / ps]) + ((j % ps) / G) * kv.key_group_bytes(stride) +
                           kvh * hd * chunk;
    for (int64_t d = 0; d < hd; d++) kivi_dequantize(bits, group + d * chunk, G, j % G, end - j, kt + d * kKeyBlock + (j - j0));
    j = end;
  }
  for (int64_t j = std::max(j0, boundary); j < std::min(j0 + jn, c.fresh_from); j++) {
    const uint16_t* row = c.k_staged + (j - c.staged_from) * stride + kvh * hd;
    for (int64_t d = 0; d < hd; d++) kt[d * kKeyBlock + (j - j0)] = f16_to_f32(row[d]);
  }
  for (int64_t j = std::max({j0, boundary, c.fresh_from}); j < j0 + jn; j++) {
    const float* row = c.k_fresh + (j - c.fresh_from) * stride + kvh * hd;
    for (int64_t d = 0; d < hd; d++) kt[d * kKeyBlock + (j - j0)] = row[d];
  }
  for (int64_t d = 0; d < hd; d++) std::fill(kt + d * kKeyBlock + jn, kt + (d + 1) * kKeyBlock, 0.0f);
}

// s[r][j] = q[r] · key j for RB query rows and the first `keys` keys (a
// multiple of 32) of a transposed block: each key vector loaded once for all
// RB rows, 4 × 8 keys accumulated at a time.
template <int RB>
__attribute__((target("avx2,fma"))) void block_scores(const float* const* q, const float* kt, int64_t hd, int64_t keys,
                                                      float* s) {
  for (int64_t j0 = 0; j0 < keys; j0 += 32) {
    __m256 acc[RB][4];
    for (int r = 0; r < RB; r++)
      for (int i = 0; i < 4; i++) acc[r][i] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
      const float* kd = kt + d * kKeyBlock + j0;
      const __m256 k0 = _mm256_loadu_ps(kd), k1 = _mm256_loadu_ps(kd + 8), k2 = _mm256_loadu_ps(kd + 16),
                   k3 = _mm256_loadu_ps(kd + 24);
      for (int r = 0; r < RB; r++) {
        const __m256 qd = _mm256_broadcast_ss(q[r] + d);
        acc[r][0] = _mm256_fmadd_ps(qd, k0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(qd, k1, acc[r][1]);
        acc[r][2] = _mm256_fmadd_ps(qd, k2, acc[r][2]);
        acc[r][3] = _mm256_fmadd_ps(qd, k3, acc[r][3]);
      }
    }
    for (int r = 0; r < RB; r++)
      for (int i = 0; i < 4; i++) _mm256_storeu_ps(s + r * kKeyBlock + j0 + 8 * i, acc[r][i]);
  }
}

// o[r] = o[r] · corr[r] + Σ_j p[r][j] · v[j] for RB rows over `count` keys,
// 32 columns at a time held in registers (each value vector loaded once for
// all RB rows), then 8 at a time.
template <int RB>
__attribute__((target("avx2,fma"))) void block_values(float* const* o, const float* corr, const float* p,
                                                      const float* v, int64_t hd, int64_t count) {
  int64_t d = 0;
  for (; d + 32 <= hd; d += 32) {
    __m256 acc[RB][4];
    for (int r = 0; r < RB; r++)
      for (int i = 0; i < 4; i++) acc[r][i] = _mm256_mul_ps(_mm256_loadu_ps(o[r] + d + 8 * i), _mm256_set1_ps(corr[r]));
    for (int64_t j = 0; j < count; j++) {
      const float* vj = v + j * hd + d;
      const __m256 v0 = _mm256_loadu_ps(vj), v1 = _mm256_loadu_ps(vj + 8), v2 = _mm256_loadu_ps(vj + 16),
                   v3 = _mm256_loadu_ps(vj + 24);
      for (int r = 0; r < RB; r++) {
        const __m256 pj = _mm256_broadcast_ss(p + r * kKeyBlock + j);
        acc[r][0] = _mm256_fmadd_ps(pj, v0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(pj, v1, acc[r][1]);
        acc[r][2] = _mm256_fmadd_ps(pj, v2, acc[r][2]);
        acc[r][3] = _mm256_fmadd_ps(pj, v3, acc[r][3]);
      }
    }
    for (int r = 0; r < RB; r++)
      for (int i = 0; i < 4; i++) _mm256_storeu_ps(o[r] + d + 8 * i, acc[r][i]);
  }
  for (; d < hd; d += 8)
    for (int r = 0; r < RB; r++) {
      __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(o[r] + d), _mm256_set1_ps(corr[r]));
      for (int64_t j = 0; j < count; j++)
        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p + r * kKeyBlock + j), _mm256_loadu_ps(v + j * hd + d), acc);
      _mm256_storeu_ps(o[r] + d, acc);
    }
}

// One row's online-softmax step over its visible scores s[begin..count) of a
// block (the rest of the 64 set to 0): scores scaled (and soft-capped),
// running max m and sum l updated, the scores replaced by their
// probabilities (0 outside the visible range); returns the factor that
// rescales the row's earlier output.
__attribute__((target("avx2,fma"))) float softmax_step(float* s, int64_t begin, int64_t count, float scale,
                                                      float softcap, float& m, float& l) {
  if (softcap > 0) {
    for (int64_t j = begin; j < count; j++) s[j] = softcap * std::tanh(s[j] * scale / softcap);
    scale = 1.0f;
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 bmax = ninf;
  for (int64_t j = 0; j < count; j += 8) {
    const __m256i at = _mm256_add_epi32(_mm256_set1_epi32(int(j)), lane);
    const __m256i valid = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(int(begin)), at),
                                              _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), at));
    const __m256 sv = _mm256_blendv_ps(ninf, _mm256_mul_ps(_mm256_loadu_ps(s + j), _mm256_set1_ps(scale)),
                                       _mm256_castsi256_ps(valid));
    _mm256_storeu_ps(s + j, sv);
    bmax = _mm256_max_ps(bmax, sv);
  }
  const float m_new = std::max(m, simd_avx2::hmax(bmax));
  const float corr = std::exp(m - m_new);  // 0 for the first block (m = −inf)
  __m256 psum = _mm256_setzero_ps();
  for (int64_t j = 0; j < count; j += 8) {
    const __m256 p = simd_avx2::exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), _mm256_set1_ps(m_new)));
    _mm256_storeu_ps(s + j, p);
    psum = _mm256_add_ps(psum, p);
  }
  l = l * corr + simd_avx2::hsum(psum);
  m = m_new;
  return corr;
}

// One tile of one sequence: KV head kvh, tokens t0..t0+tokens-1, rows r = (token, head in group).
__attribute__((target("avx2,fma,f16c"))) void tile_avx2(const AttentionShape& s, const KvCacheSpec& kv, const PagedQuery& pq,
                                                        float scale, int64_t kvh, int64_t t0, int64_t tokens,
                                                        Scratch& w) {
  const float* q = pq.q;
  float* out = pq.out;
  const int64_t pos0 = pq.pos0, ps = pq.cache.page_size;
  const int64_t hd = s.head_dim, group = s.n_heads / s.n_kv_heads, R = tokens * group;
  w.kt.resize(size_t(kKeyBlock * hd));
  w.v.resize(size_t(kKeyBlock * hd));
  w.rows.resize(size_t(kKeyBlock * hd));
  w.o.assign(size_t(R * hd), 0.0f);
  w.s.resize(size_t(R * kKeyBlock));
  w.m.assign(size_t(R), -std::numeric_limits<float>::infinity());
  w.l.assign(size_t(R), 0.0f);
  if (s.sinks)  // the sink as a first score with no value: running max at it, its e^0 in the sum
    for (int64_t r = 0; r < R; r++) w.m[size_t(r)] = s.sinks[kvh * group + r % group], w.l[size_t(r)] = 1.0f;
  const int64_t keys = pos0 + t0 + tokens;  // visible to the tile's last token
  const int64_t boundary = kv.kivi() ? kv.kivi_boundary(pos0 + t0) : 0;  // the same for all (attention_paged)
  const int64_t krow_bytes = kv.kivi() ? 0 : kv_row_bytes(kv.k, s.kv_stride);
  const int64_t vrow_bytes = kv.kivi() ? 0 : kv_row_bytes(kv.v, s.kv_stride);
  const int64_t khead = kv.kivi() ? 0 : kv_row_bytes(kv.k, kvh * hd), vhead = kv.kivi() ? 0 : kv_row_bytes(kv.v, kvh * hd);
  // Blocks before the one holding the first token's first key are seen by no
  // row of the tile (sliding window); blocks stay on the grid from `first`.
  const int64_t lo = std::max(pq.cache.first, s.first_key(pos0 + t0));
  for (int64_t j0 = pq.cache.first + (lo - pq.cache.first) / kKeyBlock * kKeyBlock; j0 < keys; j0 += kKeyBlock) {
    const int64_t jn = std::min(kKeyBlock, keys - j0);
    if (kv.kivi()) {
      convert_keys_kivi(kv, pq.cache, s.kv_stride, kvh, hd, j0, jn, boundary, w.kt.data());
      for (int64_t j = 0; j < jn; j++)
        cached_values(kv, false, pq.cache, s.kv_stride, j0 + j, kvh * hd, hd, &w.v[size_t(j * hd)], boundary);
      std::fill(w.v.begin() + jn * hd, w.v.end(), 0.0f);
    } else {
      // Row addresses, walking pages without a division per row.
      for (int64_t j = 0, page = j0 / ps, r = j0 % ps; j < jn; j++) {
        w.krow[j] = static_cast<const uint8_t*>(pq.cache.k[page]) + r * krow_bytes + khead;
        w.vrow[j] = static_cast<const uint8_t*>(pq.cache.v[page]) + r * vrow_bytes + vhead;
        if (++r == ps) r = 0, page++;
      }
      convert_keys(kv.k, w.krow, jn, hd, w.kt.data(), w.rows.data());
      convert_values(kv.v, w.vrow, jn, hd, w.v.data());
    }
    // Rows two at a time (one more on its own when R is odd); a row whose
    // token sees none of this block (count ≤ begin) is left as it is.
    for (int64_t r = 0; r < R; r += 2) {
      const int rb = int(std::min<int64_t>(2, R - r));
      const float* qr[2];
      float* o[2];
      float corr[2];
      int64_t begin[2], count[2], most = 0;
      bool any = false;
      for (int i = 0; i < rb; i++) {
        const int64_t t = t0 + (r + i) / group, h = kvh * group + (r + i) % group;
        qr[i] = q + t * s.q_stride + h * hd;
        o[i] = w.o.data() + (r + i) * hd;
        begin[i] = std::max<int64_t>(0, s.first_key(pos0 + t) - j0);  // the window's start
        count[i] = std::min(jn, pos0 + t + 1 - j0);                    // causal: keys ≤ pos0 + t
        most = std::max(most, count[i]);
        any = any || count[i] > begin[i];
      }
      if (!any) continue;
      float* sc = w.s.data() + r * kKeyBlock;
      const int64_t keys32 = (most + 31) / 32 * 32;
      if (rb == 2)
        block_scores<2>(qr, w.kt.data(), hd, keys32, sc);
      else
        block_scores<1>(qr, w.kt.data(), hd, keys32, sc);
      for (int i = 0; i < rb; i++) {
        float* si = sc + i * kKeyBlock;
        if (count[i] > begin[i]) {
          corr[i] = softmax_step(si, begin[i], count[i], scale, s.softcap, w.m[size_t(r + i)], w.l[size_t(r + i)]);
          std::fill(si + count[i], si + most, 0.0f);  // keys this row may not see
        } else {
          corr[i] = 1.0f;
          std::fill(si, si + most, 0.0f);
        }
      }
      if (rb == 2)
        block_values<2>(o, corr, sc, w.v.data(), hd, most);
      else
        block_values<1>(o, corr, sc, w.v.data(), hd, most);
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
#endif  // defined(__x86_64__)

}  // namespace

void attention_paged_ref(const AttentionShape& s, const KvCacheSpec& kv, const PagedQuery* seqs, int64_t n_seqs,
                         float scale) {
  const int64_t hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  for (int64_t si = 0; si < n_seqs; si++) {
    const PagedQuery& pq = seqs[si];
    const int64_t n = pq.n, pos0 = pq.pos0;
#pragma omp parallel
    {
      std::vector<float> sc(size_t(pos0 + n));
      std::vector<double> o(static_cast<size_t>(hd));
      std::vector<float> row(static_cast<size_t>(hd));
#pragma omp for collapse(2) schedule(static)
      for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < s.n_heads; h++) {
          const int64_t kvh = h / group, visible = pos0 + t + 1;
          const int64_t from = std::max(pq.cache.first, s.first_key(pos0 + t));
          const int64_t boundary = kv.kivi() ? kv.kivi_boundary(pos0 + t) : 0;
          const float* qr = pq.q + t * s.q_stride + h * hd;
          float mx = s.sinks ? s.sinks[h] : -std::numeric_limits<float>::infinity();
          for (int64_t j = from; j < visible; j++) {
            cached_values(kv, true, pq.cache, s.kv_stride, j, kvh * hd, hd, row.data(), boundary);
            float d = 0;
            for (int64_t i = 0; i < hd; i++) d += qr[i] * row[size_t(i)];
            sc[size_t(j)] = d * scale;
            if (s.softcap > 0) sc[size_t(j)] = s.softcap * std::tanh(sc[size_t(j)] / s.softcap);
            mx = std::max(mx, sc[size_t(j)]);
          }
          double sum = s.sinks ? std::exp(double(s.sinks[h] - mx)) : 0.0;
          std::fill(o.begin(), o.end(), 0.0);
          for (int64_t j = from; j < visible; j++) {
            const double p = std::exp(double(sc[size_t(j)] - mx));
            sum += p;
            cached_values(kv, false, pq.cache, s.kv_stride, j, kvh * hd, hd, row.data(), boundary);
            for (int64_t i = 0; i < hd; i++) o[size_t(i)] += p * row[size_t(i)];
          }
          for (int64_t i = 0; i < hd; i++) pq.out[t * s.out_stride + h * hd + i] = float(o[size_t(i)] / sum);
        }
    }
  }
}

void attention_paged(const AttentionShape& s, const KvCacheSpec& kv, const PagedQuery* seqs, int64_t n_seqs,
                     float scale) {
#if !defined(__x86_64__)
  return attention_paged_ref(s, kv, seqs, n_seqs, scale);
#else
  if (!qdot_simd_active() || s.head_dim % 8 != 0) return attention_paged_ref(s, kv, seqs, n_seqs, scale);
  const int64_t group = s.n_heads / s.n_kv_heads;
  const int64_t tokens = std::max<int64_t>(1, kTileRows / group);  // per tile
  struct Item {
    int64_t seq, kvh, t0, n;
  };
  std::vector<Item> items;
  for (int64_t si = 0; si < n_seqs; si++)
    for (int64_t kvh = 0; kvh < s.n_kv_heads; kvh++)
      for (int64_t t0 = 0; t0 < seqs[si].n;) {
        int64_t end = std::min(seqs[si].n, t0 + tokens);
        // A KIVI tile's tokens share one boundary: split where it moves.
        if (kv.kivi())
          for (int64_t t = t0 + 1; t < end; t++)
            if (kv.kivi_boundary(seqs[si].pos0 + t) != kv.kivi_boundary(seqs[si].pos0 + t0)) end = t;
        items.push_back({si, kvh, t0, end - t0});
        t0 = end;
      }
  // Later tokens see more keys: dynamic scheduling evens out the causal triangle.
#pragma omp parallel
  {
    static thread_local Scratch w;
#pragma omp for schedule(dynamic)
    for (size_t i = 0; i < items.size(); i++) {
      const Item& it = items[i];
      const PagedQuery& pq = seqs[it.seq];
      tile_avx2(s, kv, pq, scale, it.kvh, it.t0, it.n, w);
    }
  }
#endif
}

namespace {

// A contiguous cache as one page.
PagedQuery one_page(const float* q, int64_t n, int64_t pos0, const void* const* k, const void* const* v,
                    float* out) {
  PagedQuery pq;
  pq.q = q;
  pq.out = out;
  pq.n = n;
  pq.pos0 = pos0;
  pq.cache = {k, v, std::max<int64_t>(1, pos0 + n)};
  return pq;
}

}  // namespace

void attention_ref(const AttentionShape& s, const KvCacheSpec& kv, const float* q, int64_t n, int64_t pos0, const void* k,
                   const void* v, float scale, float* out) {
  const PagedQuery pq = one_page(q, n, pos0, &k, &v, out);
  attention_paged_ref(s, kv, &pq, 1, scale);
}

void attention(const AttentionShape& s, const KvCacheSpec& kv, const float* q, int64_t n, int64_t pos0, const void* k,
               const void* v, float scale, float* out) {
  if (kv.kivi()) fail("attention: a KIVI cache is read through attention_paged with its staged rows");
  const PagedQuery pq = one_page(q, n, pos0, &k, &v, out);
  attention_paged(s, kv, &pq, 1, scale);
}

void attention_weights(const AttentionShape& s, const KvCacheSpec& kv, const float* q, int64_t n, int64_t pos0,
                       const void* k, float scale, float* acc, int64_t acc_stride) {
  if (kv.kivi()) fail("attention_weights: a KIVI cache has no rows to rank");
  if (s.window > 0 || s.softcap > 0 || s.sinks)
    fail("attention_weights: eviction policies rank full, uncapped attention without sinks only");
  const int64_t hd = s.head_dim, group = s.n_heads / s.n_kv_heads, keys = pos0 + n;
  const int64_t row_bytes = kv_row_bytes(kv.k, s.kv_stride);
  const auto* rows = static_cast<const uint8_t*>(k);
#pragma omp parallel
  {
    std::vector<float> key(static_cast<size_t>(hd));
    std::vector<double> sc(size_t(group * n * keys));
#pragma omp for schedule(static)
    for (int64_t g = 0; g < s.n_kv_heads; g++) {
      // Each key converted once for all the queries that share its head.
      for (int64_t j = 0; j < keys; j++) {
        kv_row_to_f32(kv.k, rows + j * row_bytes + kv_row_bytes(kv.k, g * hd), hd, key.data());
        for (int64_t t = std::max<int64_t>(0, j - pos0); t < n; t++)
          for (int64_t h = 0; h < group; h++) {
            const float* qr = q + t * s.q_stride + (g * group + h) * hd;
            double d = 0;
            for (int64_t i = 0; i < hd; i++) d += double(qr[i]) * key[size_t(i)];
            sc[size_t((t * group + h) * keys + j)] = d * scale;
          }
      }
      for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < group; h++) {
          double* r = sc.data() + (t * group + h) * keys;
          const int64_t visible = pos0 + t + 1;
          const double mx = *std::max_element(r, r + visible);
          double sum = 0;
          for (int64_t j = 0; j < visible; j++) sum += r[j] = std::exp(r[j] - mx);
          for (int64_t j = 0; j < visible; j++) acc[g * acc_stride + j] += float(r[j] / sum);
        }
    }
  }
}

void exp_f32(const float* x, int64_t n, float* y) {
#if defined(__x86_64__)
  if (qdot_simd_active()) return exp_avx2(x, n, y);
#endif
  for (int64_t i = 0; i < n; i++) y[i] = x[i] < -87.33654f ? 0.0f : std::exp(std::min(x[i], 88.0f));
}

}  // namespace lmpress
