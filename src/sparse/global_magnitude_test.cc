#include "sparse/global_magnitude.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace lmpress {
namespace {

// Matrices of different scales (and many exactly tied values, including
// zeros and -0), checked against the threshold from sorting all |w|.
std::vector<std::vector<float>> matrices() {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<std::vector<float>> m;
  for (float scale : {1.0f, 0.1f, 3.0f, 0.5f}) {
    std::vector<float> w(size_t(1000 + rng() % 500));
    for (auto& x : w) x = nd(rng) * scale;
    for (size_t i = 0; i < w.size(); i += 7) w[i] = (i % 2 ? -0.25f : 0.25f);  // ties
    for (size_t i = 3; i < w.size(); i += 50) w[i] = (i % 2 ? -0.0f : 0.0f);
    m.push_back(w);
  }
  return m;
}

TEST(GlobalMagnitude, MatchesTheSortedThreshold) {
  const auto m = matrices();
  std::vector<float> all;
  for (const auto& w : m)
    for (float x : w) all.push_back(std::fabs(x));
  std::sort(all.begin(), all.end());
  for (double s : {0.0, 0.013, 0.3, 0.5, 0.77, 1.0}) {
    SCOPED_TRACE("sparsity " + std::to_string(s));
    const auto z = global_magnitude_zeros(int64_t(m.size()), [&](int64_t i) { return m[size_t(i)]; }, s);
    const int64_t k = std::llround(s * double(all.size()));
    int64_t sum = 0;
    for (int64_t v : z) sum += v;
    EXPECT_EQ(sum, k);
    if (k == 0) continue;
    const float t = all[size_t(k - 1)];  // the k-th smallest |w|
    for (size_t i = 0; i < m.size(); i++) {
      const auto below = std::count_if(m[i].begin(), m[i].end(), [&](float x) { return std::fabs(x) < t; });
      const auto at_most = std::count_if(m[i].begin(), m[i].end(), [&](float x) { return std::fabs(x) <= t; });
      EXPECT_GE(z[i], below) << i;
      EXPECT_LE(z[i], at_most) << i;
    }
  }
  // The small-scale matrix loses more than the large-scale one.
  const auto z = global_magnitude_zeros(int64_t(m.size()), [&](int64_t i) { return m[size_t(i)]; }, 0.5);
  EXPECT_GT(double(z[1]) / double(m[1].size()), 0.9);
  EXPECT_LT(double(z[2]) / double(m[2].size()), 0.3);
}

TEST(GlobalMagnitude, RejectsNaNAndBadSparsity) {
  std::vector<float> w{1, 2, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_ANY_THROW(global_magnitude_zeros(1, [&](int64_t) { return w; }, 0.5));
  EXPECT_ANY_THROW(global_magnitude_zeros(1, [&](int64_t) { return std::vector<float>{1, 2}; }, 1.5));
}

}  // namespace
}  // namespace lmpress
