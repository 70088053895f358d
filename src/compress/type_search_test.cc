#include "compress/type_search.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace lmpress {
namespace {

// Two tensors, by hand: A gains 8 error units for 100 bytes going Q2_K -> Q4_K,
// B only 0.5; with room for one upgrade, A gets it.
TEST(TypeSearch, TakesTheUpgradeWithTheLargestGainPerByte) {
  const std::vector<TensorCosts> t = {
      {"a", {{DType::Q2_K, 100, 10.0}, {DType::Q4_K, 200, 2.0}, {DType::Q8_0, 400, 0.1}}},
      {"b", {{DType::Q2_K, 100, 1.0}, {DType::Q4_K, 200, 0.5}, {DType::Q8_0, 400, 0.01}}},
  };
  auto c = choose_types_for_budget(t, 300);
  EXPECT_EQ(c["a"], DType::Q4_K);
  EXPECT_EQ(c["b"], DType::Q2_K);
  c = choose_types_for_budget(t, 1000);  // everything fits
  EXPECT_EQ(c["a"], DType::Q8_0);
  EXPECT_EQ(c["b"], DType::Q8_0);
  c = choose_types_for_budget(t, 200);
  EXPECT_EQ(c["a"], DType::Q2_K);
  EXPECT_THROW(choose_types_for_budget(t, 199), std::exception);
}

// A dominated option (more bytes, more error) and one above the convex hull
// are never chosen; a budget that skips a big upgrade still takes a small one.
TEST(TypeSearch, SkipsDominatedOptionsAndFillsTheBudget) {
  const std::vector<TensorCosts> t = {
      {"a", {{DType::Q4_0, 100, 5.0}, {DType::Q4_1, 110, 6.0}, {DType::Q5_0, 150, 4.9}, {DType::Q8_0, 200, 0.0}}},
      {"b", {{DType::Q4_0, 100, 1.0}, {DType::Q5_0, 120, 0.8}}},
  };
  auto c = choose_types_for_budget(t, 1000);
  EXPECT_EQ(c["a"], DType::Q8_0);
  c = choose_types_for_budget(t, 250);  // a's upgrade (100 bytes) does not fit; b's (20) does
  EXPECT_EQ(c["a"], DType::Q4_0);
  EXPECT_EQ(c["b"], DType::Q5_0);
}

// Against exhaustive search on small random instances (budgets below the
// DP's unit count, so it is exact): the same least error, within budget.
TEST(TypeSearch, MatchesExhaustiveSearch) {
  std::mt19937 rng(3);
  const DType types[] = {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q6_K};
  for (int trial = 0; trial < 50; trial++) {
    std::vector<TensorCosts> t;
    for (int i = 0; i < 6; i++) {
      TensorCosts tc{"t" + std::to_string(i), {}};
      const double scale = std::exp(std::uniform_real_distribution<double>(-3, 3)(rng));
      const uint64_t size = 100 + rng() % 900;
      for (int k = 0; k < 4; k++)
        tc.options.push_back({types[k], size * uint64_t(k + 2) + rng() % 50, scale * std::pow(0.25, k) * (1 + 0.1 * (rng() % 3))});
      t.push_back(tc);
    }
    uint64_t min_total = 0, max_total = 0;
    for (const auto& tc : t) min_total += tc.options.front().bytes, max_total += tc.options.back().bytes;
    const uint64_t budget = min_total + rng() % (max_total - min_total);
    const auto c = choose_types_for_budget(t, budget);
    uint64_t used = 0;
    double err = 0;
    for (const auto& tc : t)
      for (const auto& o : tc.options)
        if (o.type == c.at(tc.name)) used += o.bytes, err += o.error;
    EXPECT_LE(used, budget);
    double best = INFINITY;
    for (int code = 0; code < 4096; code++) {
      uint64_t u = 0;
      double e = 0;
      for (int i = 0, x = code; i < 6; i++, x /= 4) u += t[size_t(i)].options[size_t(x % 4)].bytes, e += t[size_t(i)].options[size_t(x % 4)].error;
      if (u <= budget) best = std::min(best, e);
    }
    EXPECT_NEAR(err, best, 1e-9 * best);
  }
}

}  // namespace
}  // namespace lmpress
