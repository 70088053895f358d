#include "kernels/hadamard.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"
#include "kernels/qdot.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lmpress {

namespace {

// The unnormalized transform of p floats (p a power of two): H_p·y without the 1/√p.
void fwht_ref(float* y, int64_t p) {
  for (int64_t h = 1; h < p; h *= 2)
    for (int64_t i = 0; i < p; i += 2 * h)
      for (int64_t j = i; j < i + h; j++) {
        const float a = y[j], c = y[j + h];
        y[j] = a + c;
        y[j + h] = a - c;
      }
}

// y (m × p) <- scale·H_mᵀ·x (x viewed as m × p): row k of y is scale · Σ_i H(i, k)·(row i of x), summed in
// order of i, as the AVX2 kernel sums each lane.
void mix_ref(const float* x, const int8_t* h, int64_t m, int64_t p, float scale, float* y) {
  for (int64_t k = 0; k < m; k++) {
    float* yk = y + k * p;
    std::fill(yk, yk + p, 0.0f);
    for (int64_t i = 0; i < m; i++) {
      const float* xi = x + i * p;
      if (h[i * m + k] > 0)
        for (int64_t c = 0; c < p; c++) yk[c] += xi[c];
      else
        for (int64_t c = 0; c < p; c++) yk[c] -= xi[c];
    }
    for (int64_t c = 0; c < p; c++) yk[c] *= scale;
  }
}

#if defined(__x86_64__)
// The same butterflies in the same order (so the same bits): stages 1, 2 and 4
// inside each 8-float vector (a lane takes a + c or c − a from its partner),
// then whole vectors. p a multiple of 8.
__attribute__((target("avx2"))) void fwht_avx2(float* y, int64_t p) {
  for (int64_t j = 0; j < p; j += 8) {
    __m256 v = _mm256_loadu_ps(y + j);
    __m256 t = _mm256_permute_ps(v, 0xB1);  // partners 1 apart
    v = _mm256_blend_ps(_mm256_add_ps(v, t), _mm256_sub_ps(t, v), 0xAA);
    t = _mm256_permute_ps(v, 0x4E);  // 2 apart
    v = _mm256_blend_ps(_mm256_add_ps(v, t), _mm256_sub_ps(t, v), 0xCC);
    t = _mm256_permute2f128_ps(v, v, 1);  // 4 apart
    v = _mm256_blend_ps(_mm256_add_ps(v, t), _mm256_sub_ps(t, v), 0xF0);
    _mm256_storeu_ps(y + j, v);
  }
  for (int64_t h = 8; h < p; h *= 2)
    for (int64_t i = 0; i < p; i += 2 * h)
      for (int64_t j = i; j < i + h; j += 8) {
        const __m256 a = _mm256_loadu_ps(y + j), c = _mm256_loadu_ps(y + j + h);
        _mm256_storeu_ps(y + j, _mm256_add_ps(a, c));
        _mm256_storeu_ps(y + j + h, _mm256_sub_ps(a, c));
      }
}

// A ±1 entry as the mask that flips a float's sign (−1) or keeps it.
__attribute__((target("avx2"))) inline __m256 sign_mask(int8_t v) {
  return _mm256_castsi256_ps(_mm256_set1_epi32(v < 0 ? INT32_MIN : 0));
}

// mix_ref with 64 columns at a time in 8 accumulators; a −1 entry flips the
// sign bit of x (a + (−x) is a − x exactly). p a multiple of 8.
__attribute__((target("avx2"))) void mix_avx2(const float* x, const int8_t* h, int64_t m, int64_t p, float scale,
                                              float* y) {
  const __m256 sc = _mm256_set1_ps(scale);
  for (int64_t k = 0; k < m; k++) {
    int64_t c0 = 0;
    for (; c0 + 64 <= p; c0 += 64) {
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
      for (int64_t i = 0; i < m; i++) {
        const __m256 s = sign_mask(h[i * m + k]);
        const float* xi = x + i * p + c0;
        a0 = _mm256_add_ps(a0, _mm256_xor_ps(_mm256_loadu_ps(xi), s));
        a1 = _mm256_add_ps(a1, _mm256_xor_ps(_mm256_loadu_ps(xi + 8), s));
        a2 = _mm256_add_ps(a2, _mm256_xor_ps(_mm256_loadu_ps(xi + 16), s));
        a3 = _mm256_add_ps(a3, _mm256_xor_ps(_mm256_loadu_ps(xi + 24), s));
        a4 = _mm256_add_ps(a4, _mm256_xor_ps(_mm256_loadu_ps(xi + 32), s));
        a5 = _mm256_add_ps(a5, _mm256_xor_ps(_mm256_loadu_ps(xi + 40), s));
        a6 = _mm256_add_ps(a6, _mm256_xor_ps(_mm256_loadu_ps(xi + 48), s));
        a7 = _mm256_add_ps(a7, _mm256_xor_ps(_mm256_loadu_ps(xi + 56), s));
      }
      float* yk = y + k * p + c0;
      _mm256_storeu_ps(yk, _mm256_mul_ps(a0, sc));
      _mm256_storeu_ps(yk + 8, _mm256_mul_ps(a1, sc));
      _mm256_storeu_ps(yk + 16, _mm256_mul_ps(a2, sc));
      _mm256_storeu_ps(yk + 24, _mm256_mul_ps(a3, sc));
      _mm256_storeu_ps(yk + 32, _mm256_mul_ps(a4, sc));
      _mm256_storeu_ps(yk + 40, _mm256_mul_ps(a5, sc));
      _mm256_storeu_ps(yk + 48, _mm256_mul_ps(a6, sc));
      _mm256_storeu_ps(yk + 56, _mm256_mul_ps(a7, sc));
    }
    for (; c0 < p; c0 += 8) {
      __m256 a = _mm256_setzero_ps();
      for (int64_t i = 0; i < m; i++)
        a = _mm256_add_ps(a, _mm256_xor_ps(_mm256_loadu_ps(x + i * p + c0), sign_mask(h[i * m + k])));
      _mm256_storeu_ps(y + k * p + c0, _mm256_mul_ps(a, sc));
    }
  }
}
#endif  // defined(__x86_64__)

// The AVX2 kernels where they run (p a multiple of 8), else the references:
// the same bits either way.
#if defined(__x86_64__)
bool use_avx2(int64_t p) { return p % 8 == 0 && qdot_simd_active(); }
#endif

void fwht(float* y, int64_t p) {
#if defined(__x86_64__)
  if (use_avx2(p)) return fwht_avx2(y, p);
#endif
  fwht_ref(y, p);
}

void mix(const float* x, const int8_t* h, int64_t m, int64_t p, float scale, float* y) {
#if defined(__x86_64__)
  if (use_avx2(p)) return mix_avx2(x, h, m, p, scale, y);
#endif
  mix_ref(x, h, m, p, scale, y);
}

}  // namespace

void hadamard(float* x, int64_t n, int64_t block) {
  if (block < 1 || (block & (block - 1)) != 0 || n % block != 0)
    fail("hadamard: block {} is not a power of two dividing {}", block, n);
  const float norm = 1.0f / std::sqrt(float(block));
  for (int64_t b = 0; b < n; b += block) {
    fwht(x + b, block);
    for (int64_t j = 0; j < block; j++) x[b + j] *= norm;
  }
}

namespace {

bool is_prime(int64_t q) {
  if (q < 2) return false;
  for (int64_t d = 2; d * d <= q; d++)
    if (q % d == 0) return false;
  return true;
}

// The quadratic character of Z/q: 0 at 0, 1 on squares, −1 elsewhere.
std::vector<int> quadratic_character(int64_t q) {
  std::vector<int> chi(size_t(q), -1);
  chi[0] = 0;
  for (int64_t a = 1; a < q; a++) chi[size_t(a * a % q)] = 1;
  return chi;
}

// The smallest Paley order m = 2^b·r (r odd, 2^b dividing n's power of two) for n = 2^a·r; 1 for a power of two; 0 if none.
int64_t paley_order(int64_t n) {
  if (n < 1) return 0;
  int64_t r = n;
  while (r % 2 == 0) r /= 2;
  if (r == 1) return 1;
  for (int64_t m = r; n % m == 0; m *= 2)
    if (!paley_hadamard(m).empty()) return m;
  return 0;
}

}  // namespace

std::vector<int8_t> paley_hadamard(int64_t m) {
  // Orders above 4096 are not built: the construction holds m² values and a rotation's mix costs m·n additions per
  // row (Llama 2's 11008 = 2·5504 has only order 5504).
  if (m < 4 || m % 4 != 0 || m > 4096) return {};
  int64_t q = m - 1;
  const bool first = is_prime(q) && q % 4 == 3;
  if (!first) {
    q = m / 2 - 1;
    if (!(is_prime(q) && q % 4 == 1)) return {};
  }
  const auto chi = quadratic_character(q);
  // The (q+1)-order core: [[0, 1ᵀ], [∓1, Jacobsthal]] with Jacobsthal(i, j) = χ(j − i).
  const int64_t c = q + 1;
  std::vector<int> core(size_t(c * c));
  for (int64_t i = 0; i < c; i++)
    for (int64_t j = 0; j < c; j++) {
      int v;
      if (i == 0 && j == 0) v = 0;
      else if (i == 0) v = 1;
      else if (j == 0) v = first ? -1 : 1;
      else v = chi[size_t(((j - i) % q + q) % q)];
      core[size_t(i * c + j)] = v;
    }
  std::vector<int8_t> h(size_t(m * m));
  if (first) {  // Paley I: I + core (core is skew)
    for (int64_t i = 0; i < c; i++)
      for (int64_t j = 0; j < c; j++) h[size_t(i * m + j)] = int8_t(core[size_t(i * c + j)] + (i == j));
    return h;
  }
  // Paley II: each core entry becomes a 2×2 block, 0 -> [[1, −1], [−1, −1]], ±1 -> ±[[1, 1], [1, −1]].
  for (int64_t i = 0; i < c; i++)
    for (int64_t j = 0; j < c; j++) {
      const int v = core[size_t(i * c + j)];
      const int b[2][2] = {{v == 0 ? 1 : v, v == 0 ? -1 : v}, {v == 0 ? -1 : v, v == 0 ? -1 : -v}};
      for (int di = 0; di < 2; di++)
        for (int dj = 0; dj < 2; dj++) h[size_t((2 * i + di) * m + 2 * j + dj)] = int8_t(b[di][dj]);
    }
  return h;
}

bool HadamardRotation::supported(int64_t n) { return paley_order(n) > 0; }

HadamardRotation::HadamardRotation(int64_t n, uint64_t seed) : n_(n), m_(paley_order(n)), seed_(seed) {
  if (m_ == 0)
    fail("a Hadamard rotation of size {}: no construction (sizes 2^k·m with m = 1, q + 1 for a prime q ≡ 3 mod 4, "
         "or 2(q + 1) for a prime q ≡ 1 mod 4)", n);
  if (m_ > 1) h_ = paley_hadamard(m_);
  std::mt19937_64 rng(seed);
  signs_.resize(size_t(n));
  for (auto& s : signs_) s = (rng() >> 63) ? -1.0f : 1.0f;
}

void HadamardRotation::apply(float* x) const {
  for (int64_t j = 0; j < n_; j++) x[j] *= signs_[size_t(j)];
  const int64_t p = n_ / m_;
  // One normalization at the end: Q = diag(s)·(H_m ⊗ H_p) / √n.
  const float scale = 1.0f / std::sqrt(float(n_));
  for (int64_t i = 0; i < m_; i++) fwht(x + i * p, p);
  if (m_ == 1) {
    for (int64_t j = 0; j < n_; j++) x[j] *= scale;
    return;
  }
  thread_local std::vector<float> y;
  y.resize(size_t(n_));
  mix(x, h_.data(), m_, p, scale, y.data());
  std::copy(y.begin(), y.end(), x);
}

void HadamardRotation::apply_rows(float* x, int64_t rows) const {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; r++) apply(x + r * n_);
}

}  // namespace lmpress
