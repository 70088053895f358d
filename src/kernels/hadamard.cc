#include "kernels/hadamard.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"

namespace lmpress {

void hadamard(float* x, int64_t n, int64_t block) {
  if (block < 1 || (block & (block - 1)) != 0 || n % block != 0)
    fail("hadamard: block {} is not a power of two dividing {}", block, n);
  const float norm = 1.0f / std::sqrt(float(block));
  for (int64_t b = 0; b < n; b += block) {
    float* y = x + b;
    for (int64_t h = 1; h < block; h *= 2)
      for (int64_t i = 0; i < block; i += 2 * h)
        for (int64_t j = i; j < i + h; j++) {
          const float a = y[j], c = y[j + h];
          y[j] = a + c;
          y[j + h] = a - c;
        }
    for (int64_t j = 0; j < block; j++) y[j] *= norm;
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
  // Orders above 4096 (none a model needs) are not built: the construction holds m² values.
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
  for (int64_t i = 0; i < m_; i++) hadamard(x + i * p, p, p);
  if (m_ == 1) return;
  // x viewed as m × p: each column z <- H_mᵀ·z / √m, computed a row of H_m at a
  // time over whole rows of x (p contiguous values: the loops vectorize).
  thread_local std::vector<float> y;
  y.assign(size_t(n_), 0.0f);
  for (int64_t i = 0; i < m_; i++) {
    const int8_t* row = h_.data() + i * m_;
    const float* xi = x + i * p;
    for (int64_t k = 0; k < m_; k++) {
      float* yk = y.data() + k * p;
      if (row[k] > 0)
        for (int64_t c = 0; c < p; c++) yk[c] += xi[c];
      else
        for (int64_t c = 0; c < p; c++) yk[c] -= xi[c];
    }
  }
  const float norm = 1.0f / std::sqrt(float(m_));
  for (int64_t j = 0; j < n_; j++) x[j] = y[size_t(j)] * norm;
}

void HadamardRotation::apply_rows(float* x, int64_t rows) const {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; r++) apply(x + r * n_);
}

}  // namespace lmpress
