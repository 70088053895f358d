#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

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

// The filters on a vocabulary of 5000 against a reference that sorts all of it
// first: top-p and min-p prefixes longer than one partial sort's first chunk.
TEST(Sampler, FiltersOnALargeVocabularyEqualAFullSort) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.5f);
  std::vector<float> l(5000);
  for (auto& x : l) x = nd(rng);
  l[17] = l[18];  // a tie: the lower id first
  auto reference = [&](const SamplerOptions& o) {
    std::vector<int32_t> ids(l.size());
    for (size_t i = 0; i < ids.size(); i++) ids[i] = int32_t(i);
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    if (o.top_k > 0) ids.resize(std::min<size_t>(ids.size(), size_t(o.top_k)));
    double sum = 0;
    for (int32_t i : ids) sum += std::exp(double(l[i] - l[ids[0]]));
    size_t keep = ids.size();
    if (o.top_p < 1.0f) {
      double cum = 0;
      size_t k = 0;
      while (k < keep && (cum += std::exp(double(l[ids[k]] - l[ids[0]])) / sum, ++k, cum < o.top_p)) {}
      keep = std::max<size_t>(k, 1);
    }
    if (o.min_p > 0.0f) {
      size_t k = 1;
      while (k < keep && std::exp(double(l[ids[k]] - l[ids[0]])) >= o.min_p) k++;
      keep = k;
    }
    ids.resize(keep);
    return ids;
  };
  for (const SamplerOptions& o : {SamplerOptions{1.0f, 0, 0.95f, 0.0f, 0}, SamplerOptions{1.0f, 0, 0.5f, 0.0f, 0},
                                  SamplerOptions{1.0f, 40, 0.9f, 0.0f, 0}, SamplerOptions{1.0f, 0, 1.0f, 0.01f, 0},
                                  SamplerOptions{1.0f, 300, 0.99f, 0.001f, 0}, SamplerOptions{1.0f, 7, 1.0f, 0.0f, 0}}) {
    const auto want = reference(o);
    EXPECT_GT(want.size(), o.top_k == 7 ? 6u : 10u);
    EXPECT_EQ(Sampler(o).candidates(l.data(), int64_t(l.size())), want)
        << "top_k " << o.top_k << " top_p " << o.top_p << " min_p " << o.min_p;
  }
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

TEST(Sampler, PenaltiesAsLlamaCpp) {
  // History 1 1 3 (and 0 outside the last 3): token 1 twice, token 3 once.
  const int32_t hist[] = {0, 1, 1, 3};
  SamplerOptions o;
  o.repeat_penalty = 2.0f;
  o.frequency_penalty = 0.5f;
  o.presence_penalty = 0.25f;
  o.penalty_last_n = 3;
  float l[] = {4.0f, 4.0f, 1.0f, -2.0f, 3.0f};
  apply_penalties(l, 5, hist, 4, o);
  EXPECT_FLOAT_EQ(l[0], 4.0f);                       // outside the window
  EXPECT_FLOAT_EQ(l[1], 4.0f / 2 - 2 * 0.5f - 0.25f);  // 0.75
  EXPECT_FLOAT_EQ(l[2], 1.0f);
  EXPECT_FLOAT_EQ(l[3], -2.0f * 2 - 0.5f - 0.25f);    // -4.75
  EXPECT_FLOAT_EQ(l[4], 3.0f);
  // Off by default: nothing changes.
  float m[] = {1.0f, 2.0f};
  apply_penalties(m, 2, hist, 4, SamplerOptions{});
  EXPECT_EQ(m[0], 1.0f);
  EXPECT_EQ(m[1], 2.0f);
}

TEST(Sampler, LogprobsAreLogSoftmax) {
  // logits ln 1, ln 2, ln 3, ln 2: probabilities 1/8, 2/8, 3/8, 2/8.
  const float l[] = {0.0f, std::log(2.0f), std::log(3.0f), std::log(2.0f)};
  TokenLogprobs r = token_logprobs(l, 4, 0, 3);
  EXPECT_NEAR(r.logprob, std::log(1.0 / 8), 1e-6);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].first, 2);
  EXPECT_NEAR(r.top[0].second, std::log(3.0 / 8), 1e-6);
  EXPECT_EQ(r.top[1].first, 1);  // tie with 3: the lower id first
  EXPECT_EQ(r.top[2].first, 3);
  EXPECT_NEAR(r.top[2].second, std::log(2.0 / 8), 1e-6);
  EXPECT_TRUE(token_logprobs(l, 4, 1, 0).top.empty());
}

}  // namespace
}  // namespace lmpress
