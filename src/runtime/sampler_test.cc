#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>

#include "runtime/generate.h"

namespace lmpress {
namespace {

TEST(Sampler, GreedyIsArgmax) {
  Sampler s({});
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 1.9f};
  EXPECT_EQ(s.sample(l.data(), 4), 1);
}

TEST(Sampler, FiltersKeepHandComputedCandidates) {
  std::vector<float> l = {3, 2, 1, 0, -10};
  SamplerOptions o{1.0f, 3, 1.0f, 0.0f, 0};
  EXPECT_EQ(Sampler(o).candidates(l.data(), 5), (std::vector<int32_t>{0, 1, 2}));
  // softmax(3,2,1) = .665 .245 .090: cumulative .665 < .7 <= .910 keeps two.
  o.top_p = 0.7f;
  EXPECT_EQ(Sampler(o).candidates(l.data(), 5), (std::vector<int32_t>{0, 1}));
  o.top_p = 0.6f;
  EXPECT_EQ(Sampler(o).candidates(l.data(), 5), (std::vector<int32_t>{0}));
  // min-p 0.3: p1/p0 = e^-1 = .37 stays, p2/p0 = e^-2 = .14 goes.
  o = {1.0f, 0, 1.0f, 0.3f, 0};
  EXPECT_EQ(Sampler(o).candidates(l.data(), 5), (std::vector<int32_t>{0, 1}));
}

TEST(Sampler, SamplesTheDistributionAndIsSeeded) {
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplerOptions o{1.0f, 0, 1.0f, 0.0f, 42};
  Sampler s(o), s2(o);
  int counts[3] = {0, 0, 0};
  const int n = 20000;
  for (int i = 0; i < n; i++) {
    int32_t a = s.sample(l.data(), 3);
    EXPECT_EQ(a, s2.sample(l.data(), 3));
    counts[a]++;
  }
  EXPECT_NEAR(counts[0] / double(n), 0.5, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 0.3, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 0.2, 0.02);
  // A low temperature sharpens towards the top token.
  o.temperature = 0.05f;
  Sampler cold(o);
  int top = 0;
  for (int i = 0; i < 1000; i++) top += cold.sample(l.data(), 3) == 0;
  EXPECT_GT(top, 990);
}

TEST(Generate, HoldsBackIncompleteUtf8) {
  std::string buf = "ab\xe2\x82";
  EXPECT_EQ(take_complete_utf8(buf), "ab");
  EXPECT_EQ(buf, "\xe2\x82");
  buf += "\xac";
  EXPECT_EQ(take_complete_utf8(buf), "\xe2\x82\xac");
  EXPECT_EQ(buf, "");
  buf = "x\xf0\x9f";
  EXPECT_EQ(take_complete_utf8(buf), "x");
}

}  // namespace
}  // namespace lmpress
