#include "kernels/hadamard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/qdot.h"
#include "test_util.h"

namespace lmpress {
namespace {

// The orthonormal Sylvester matrix built entry by entry as llama.cpp's
// ggml_gen_hadamard builds the matrix it rotates the KV cache with.
std::vector<double> sylvester(int64_t n) {
  std::vector<double> h(size_t(n * n));
  h[0] = 1.0 / std::sqrt(double(n));
  for (int64_t s = 1; s < n; s *= 2)
    for (int64_t i = 0; i < s; i++)
      for (int64_t j = 0; j < s; j++) {
        const double v = h[size_t(i * n + j)];
        h[size_t((i + s) * n + j)] = v;
        h[size_t(i * n + j + s)] = v;
        h[size_t((i + s) * n + j + s)] = -v;
      }
  return h;
}

TEST(Hadamard, MatchesTheSylvesterMatrixBlockByBlock) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (int64_t block : {1, 2, 16, 64, 128}) {
    const int64_t n = block * 3;
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng);
    std::vector<float> y = x;
    hadamard(y.data(), n, block);
    const auto h = sylvester(block);
    for (int64_t b = 0; b < n; b += block)
      for (int64_t i = 0; i < block; i++) {
        double want = 0;
        for (int64_t j = 0; j < block; j++) want += h[size_t(i * block + j)] * x[size_t(b + j)];
        EXPECT_NEAR(y[size_t(b + i)], want, 1e-5) << "block " << block << " row " << i;
      }
    hadamard(y.data(), n, block);  // its own inverse
    for (int64_t i = 0; i < n; i++) EXPECT_NEAR(y[size_t(i)], x[size_t(i)], 1e-5);
  }
  std::vector<float> x(96);
  test::expect_error([&] { hadamard(x.data(), 96, 48); }, "block 48 is not a power of two dividing 96");
  test::expect_error([&] { hadamard(x.data(), 96, 64); }, "block 64 is not a power of two dividing 96");
}

// Paley's matrices are Hadamard matrices (H·Hᵀ = m·I) for every order they
// claim, including the ones model widths need (12, 20, 28, 36, 60).
TEST(Hadamard, PaleyMatricesAreHadamard) {
  int built = 0;
  for (int64_t m = 1; m <= 200; m++) {
    const auto h = paley_hadamard(m);
    if (h.empty()) continue;
    built++;
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < m; j++) {
        int64_t dot = 0;
        for (int64_t k = 0; k < m; k++) dot += int64_t(h[size_t(i * m + k)]) * h[size_t(j * m + k)];
        ASSERT_EQ(dot, i == j ? m : 0) << "order " << m << " rows " << i << ", " << j;
      }
  }
  for (int64_t m : {12, 20, 28, 36, 44, 60, 108, 124}) EXPECT_FALSE(paley_hadamard(m).empty()) << m;
  for (int64_t m : {16, 92, 116}) EXPECT_TRUE(paley_hadamard(m).empty()) << m;  // no prime q gives them
  EXPECT_GE(built, 20);
}

// The rotation equals the dense product x·diag(s)·(H_m ⊗ H_2^k)/√n and is orthogonal.
TEST(Hadamard, RotationIsTheDenseKroneckerProduct) {
  for (int64_t n : {1, 64, 12, 288, 768, 896, 960, 3072 / 8}) {
    ASSERT_TRUE(HadamardRotation::supported(n)) << n;
    const HadamardRotation rot(n, 42);
    const int64_t m = rot.order(), p = n / m;
    const auto hm = m > 1 ? paley_hadamard(m) : std::vector<int8_t>{1};
    const auto hp = sylvester(p);  // orthonormal
    // The signs, read off the first rotated basis vectors: row j of Q is e_j·Q.
    std::vector<std::vector<float>> q(size_t(n), std::vector<float>(size_t(n), 0.0f));
    for (int64_t j = 0; j < n; j++) {
      q[size_t(j)][size_t(j)] = 1;
      rot.apply(q[size_t(j)].data());
    }
    for (int64_t j = 0; j < n; j++) {
      const int64_t a = j / p, b = j % p;
      // Row j of the Kronecker product without signs and normalisation by √m.
      const double want0 = hm[size_t(a * m)] * hp[size_t(b * p)] / std::sqrt(double(m));
      const double sign = q[size_t(j)][0] / want0;
      ASSERT_NEAR(std::fabs(sign), 1.0, 1e-5) << n;
      for (int64_t k = 0; k < n; k += std::max<int64_t>(1, n / 37)) {
        const double want = sign * hm[size_t(a * m + k / p)] * hp[size_t(b * p + k % p)] / std::sqrt(double(m));
        ASSERT_NEAR(q[size_t(j)][size_t(k)], want, 1e-5) << "n " << n << " row " << j << " col " << k;
      }
    }
    for (int64_t i = 0; i < n; i += std::max<int64_t>(1, n / 23))
      for (int64_t j = 0; j < n; j++) {
        double dot = 0;
        for (int64_t k = 0; k < n; k++) dot += double(q[size_t(i)][size_t(k)]) * q[size_t(j)][size_t(k)];
        ASSERT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-5) << "n " << n << " rows " << i << ", " << j;
      }
  }
  // apply_rows is apply on each row.
  {
    const HadamardRotation rot(768, 3);
    std::vector<float> rows(3 * 768), one(768);
    for (size_t i = 0; i < rows.size(); i++) rows[i] = std::sin(float(i) * 0.37f);
    const std::vector<float> before = rows;
    rot.apply_rows(rows.data(), 3);
    for (int64_t r = 0; r < 3; r++) {
      std::copy(before.begin() + r * 768, before.begin() + (r + 1) * 768, one.begin());
      rot.apply(one.data());
      for (int64_t j = 0; j < 768; j++) ASSERT_EQ(rows[size_t(r * 768 + j)], one[size_t(j)]) << r << " " << j;
    }
  }
  // The AVX2 transform (where it runs) gives the scalar one's bits: the same butterflies and sums in the same order.
  for (int64_t n : {768, 5632, 8192, 96, 48}) {
    if (!qdot_simd_active()) break;  // scalar alone (LMPRESS_ISA=scalar, aarch64): nothing to compare
    const HadamardRotation rot(n, 5);
    std::vector<float> a(static_cast<size_t>(n)), b;
    for (int64_t j = 0; j < n; j++) a[size_t(j)] = std::cos(float(j) * 0.11f) * float(1 + j % 7);
    b = a;
    rot.apply(a.data());
    qdot_use_simd(false);
    rot.apply(b.data());
    qdot_use_simd(true);
    EXPECT_EQ(a, b) << n;
    // hadamard() (the KV cache's rotation) takes the same paths.
    if (n % 64 == 0) {
      hadamard(a.data(), n, 64);
      qdot_use_simd(false);
      hadamard(b.data(), n, 64);
      qdot_use_simd(true);
      EXPECT_EQ(a, b) << n;
    }
  }
  // Signs differ by seed; sizes without a construction are refused by name.
  std::vector<float> a(64, 1.0f), b(64, 1.0f);
  HadamardRotation(64, 1).apply(a.data());
  HadamardRotation(64, 2).apply(b.data());
  EXPECT_NE(a, b);
  EXPECT_FALSE(HadamardRotation::supported(6));
  EXPECT_FALSE(HadamardRotation::supported(0));
  test::expect_error([] { HadamardRotation(184, 0); }, "a Hadamard rotation of size 184: no construction");
}

}  // namespace
}  // namespace lmpress
