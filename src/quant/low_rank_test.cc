#include "quant/low_rank.h"

#include <gtest/gtest.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "random_problem.h"

namespace lmpress {
namespace {

using test::make_problem;
using test::Problem;

// D = diag(3, 2, 1), H = diag(1, 4, 1): the weighted values are 3·1, 2·2, 1·1,
// so rank 1 keeps the middle entry and leaves 3²·1 + 1²·1 = 10; unweighted it
// keeps the 3 and leaves 2² + 1² = 5.
TEST(LowRank, DiagonalCaseByHand) {
  const std::vector<float> D{3, 0, 0, 0, 2, 0, 0, 0, 1}, H{1, 0, 0, 0, 4, 0, 0, 0, 1};
  const auto w = weighted_low_rank(D.data(), 3, 3, &H, 1).product();
  const std::vector<float> want_w{0, 0, 0, 0, 2, 0, 0, 0, 0};
  for (int i = 0; i < 9; i++) EXPECT_NEAR(w[size_t(i)], want_w[size_t(i)], 1e-5) << i;
  EXPECT_NEAR(weighted_sq_error(D.data(), w.data(), 3, 3, &H), 10.0, 1e-4);
  const auto p = weighted_low_rank(D.data(), 3, 3, nullptr, 1).product();
  EXPECT_NEAR(p[0], 3.0, 1e-5);
  EXPECT_NEAR(weighted_sq_error(D.data(), p.data(), 3, 3, nullptr), 5.0, 1e-4);
}

TEST(LowRank, FullRankReproducesTheMatrix) {
  const Problem p = make_problem(12, 20, 64, 3);
  for (const std::vector<float>* H : {&p.H, static_cast<const std::vector<float>*>(nullptr)}) {
    const auto f = weighted_low_rank(p.W.data(), p.rows, p.cols, H, 12);
    const auto w = f.product();
    double num = 0, den = 0;
    for (size_t i = 0; i < w.size(); i++) {
      num += double(w[i] - p.W[i]) * (w[i] - p.W[i]);
      den += double(p.W[i]) * p.W[i];
    }
    EXPECT_LT(std::sqrt(num / den), 1e-5);
  }
}

// The optimum of ‖(D − BA)X‖² over rank r is the sum of the eigenvalues of
// D·H·Dᵀ beyond the r largest (its eigenvalues are the squared singular values
// of D·X'): computed here from D H Dᵀ formed by hand, not from the whitening.
TEST(LowRank, ReachesTheOptimumOfTheWeightedNorm) {
  const Problem p = make_problem(16, 40, 200, 5);
  const int64_t R = p.rows, C = p.cols;
  std::vector<double> M(size_t(R * R), 0.0);
  for (int64_t i = 0; i < R; i++)
    for (int64_t j = 0; j < R; j++)
      for (int64_t a = 0; a < C; a++)
        for (int64_t b = 0; b < C; b++)
          M[size_t(i * R + j)] += double(p.W[size_t(i * C + a)]) * p.H[size_t(a * C + b)] * p.W[size_t(j * C + b)];
  std::vector<double> ev(static_cast<size_t>(R));
  ASSERT_EQ(LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', int(R), M.data(), int(R), ev.data()), 0);
  std::sort(ev.rbegin(), ev.rend());
  // The spectrum the solver truncates: its squares are D·H·Dᵀ's eigenvalues.
  const std::vector<double> sv = weighted_singular_values(p.W.data(), R, C, &p.H);
  ASSERT_EQ(int64_t(sv.size()), R);
  for (int64_t i = 0; i < R; i++) EXPECT_NEAR(sv[size_t(i)] * sv[size_t(i)], ev[size_t(i)], 1e-6 * ev[0]) << i;
  for (int64_t r : {1, 4, 9}) {
    double want = 0;
    for (int64_t i = r; i < R; i++) want += ev[size_t(i)];
    const auto f = weighted_low_rank(p.W.data(), R, C, &p.H, r);
    const auto w = f.product();
    const double got = weighted_sq_error(p.W.data(), w.data(), R, C, &p.H);
    EXPECT_NEAR(got, want, 1e-4 * want) << "rank " << r;
    // The plain SVD (LoRC) of the same rank is worse in this norm.
    const auto plain = weighted_low_rank(p.W.data(), R, C, nullptr, r).product();
    EXPECT_GT(weighted_sq_error(p.W.data(), plain.data(), R, C, &p.H), got * 1.01) << "rank " << r;
    // Balanced factors: B's column and A's row of each component have equal norms.
    for (int64_t c = 0; c < r; c++) {
      double na = 0, nb = 0;
      for (int64_t j = 0; j < C; j++) na += double(f.a[size_t(c * C + j)]) * f.a[size_t(c * C + j)];
      for (int64_t i = 0; i < R; i++) nb += double(f.b[size_t(i * r + c)]) * f.b[size_t(i * r + c)];
      EXPECT_NEAR(std::sqrt(na), std::sqrt(nb), 1e-4 * std::sqrt(na));
    }
  }
}

// An input channel no calibration token uses: H's row and column are zero, and
// A must not reach into it (whatever D holds there).
TEST(LowRank, UnusedInputChannelsGetNothing) {
  Problem p = make_problem(8, 16, 100, 7);
  const int64_t C = p.cols, dead = 5;
  for (int64_t j = 0; j < C; j++) p.H[size_t(dead * C + j)] = p.H[size_t(j * C + dead)] = 0.0f;
  for (int64_t i = 0; i < p.rows; i++) p.W[size_t(i * C + dead)] = 100.0f;
  const auto f = weighted_low_rank(p.W.data(), p.rows, C, &p.H, 3);
  for (int64_t c = 0; c < 3; c++) EXPECT_NEAR(f.a[size_t(c * C + dead)], 0.0f, 1e-4) << c;
}

}  // namespace
}  // namespace lmpress
