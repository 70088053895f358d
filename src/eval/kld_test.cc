#include "eval/kld.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace lmpress {
namespace {

// Uniform base over 3 tokens against q = (1/2, 1/4, 1/4):
// KL = 1/3 (ln(2/3) + 2 ln(4/3)); next token 0: Δp = 1/2 − 1/3.
TEST(Kld, OneTokenByHand) {
  KldSums s;
  const float base[3] = {0, 0, 0};
  const float cand[3] = {float(std::log(2.0)), 0, 0};
  s.add(base, cand, 3, 0);
  EXPECT_NEAR(s.sum_kld, (std::log(2.0 / 3) + 2 * std::log(4.0 / 3)) / 3, 1e-7);
  EXPECT_NEAR(s.sum_p_diff, 0.5 - 1.0 / 3, 1e-7);
  EXPECT_NEAR(s.sum_nll, std::log(2.0), 1e-7);
  EXPECT_NEAR(s.sum_nll_base, std::log(3.0), 1e-7);
  EXPECT_EQ(s.n_same_top, 1);
  const float cand2[3] = {0, 1, 0};
  s.add(base, cand2, 3, 2);
  EXPECT_EQ(s.n_same_top, 1);  // base's top is token 0 (first of equals), candidate's is 1
  EXPECT_EQ(s.count, 2);
}

// Statistics against direct computation on random distributions: the mean,
// llama.cpp's uncertainty sqrt(var/(n−1)), the same-top rate and the RMS Δp.
TEST(Kld, SummaryMatchesDirectComputation) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  const int64_t V = 50, N = 400;
  KldSums s;
  std::vector<double> klds, dps;
  int64_t same = 0;
  for (int64_t t = 0; t < N; t++) {
    std::vector<float> b(V), q(V);
    for (int64_t i = 0; i < V; i++) b[size_t(i)] = 2 * nd(rng), q[size_t(i)] = b[size_t(i)] + 0.3f * nd(rng);
    const int32_t next = int32_t(rng() % V);
    s.add(b.data(), q.data(), V, next);
    double zb = 0, zq = 0;
    for (int64_t i = 0; i < V; i++) zb += std::exp(double(b[size_t(i)])), zq += std::exp(double(q[size_t(i)]));
    double kl = 0;
    for (int64_t i = 0; i < V; i++) {
      const double pb = std::exp(double(b[size_t(i)])) / zb, pq = std::exp(double(q[size_t(i)])) / zq;
      kl += pb * std::log(pb / pq);
    }
    klds.push_back(kl);
    dps.push_back(std::exp(double(q[size_t(next)])) / zq - std::exp(double(b[size_t(next)])) / zb);
    same += std::max_element(b.begin(), b.end()) - b.begin() == std::max_element(q.begin(), q.end()) - q.begin();
  }
  const KldResult r = summarize_kld(s);
  double mean = 0, m2 = 0, rms = 0;
  for (double k : klds) mean += k / N;
  for (double k : klds) m2 += (k - mean) * (k - mean);
  for (double d : dps) rms += d * d / N;
  EXPECT_NEAR(r.kld.value, mean, 1e-9);
  EXPECT_NEAR(r.kld.unc, std::sqrt(m2 / N / (N - 1)), 1e-9);
  EXPECT_NEAR(r.rms_p_diff.value, std::sqrt(rms), 1e-9);
  EXPECT_NEAR(r.same_top.value, double(same) / N, 1e-12);
  std::sort(klds.begin(), klds.end());
  EXPECT_NEAR(r.kld_quantiles.front().second, klds.back(), 1e-6);  // maximum
  EXPECT_NEAR(r.kld_quantiles.back().second, klds.front(), 1e-6);  // minimum
}

// The saved-base path: with every logit kept (k = V) it is the full
// computation; with fewer it is the KLD of the {top k, rest} coarsening —
// checked against that formula by hand, and never above the full KLD.
TEST(Kld, TopKAgainstFullComputation) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  const int64_t V = 40;
  for (int t = 0; t < 50; t++) {
    std::vector<float> b(V), q(V);
    for (int64_t i = 0; i < V; i++) b[size_t(i)] = 2 * nd(rng), q[size_t(i)] = b[size_t(i)] + 0.4f * nd(rng);
    const int32_t next = int32_t(rng() % V);
    std::vector<int32_t> order(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; i++) order[size_t(i)] = int32_t(i);
    std::sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return b[size_t(x)] > b[size_t(y)]; });
    std::vector<float> sorted(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; i++) sorted[size_t(i)] = b[size_t(order[size_t(i)])];
    double zb = 0, zq = 0;
    for (int64_t i = 0; i < V; i++) zb += std::exp(double(b[size_t(i)])), zq += std::exp(double(q[size_t(i)]));
    KldSums full, all, top;
    full.add(b.data(), q.data(), V, next);
    all.add_topk(order.data(), sorted.data(), V, std::log(zb), b[size_t(next)], q.data(), V, next);
    const int64_t k = 5;
    top.add_topk(order.data(), sorted.data(), k, std::log(zb), b[size_t(next)], q.data(), V, next);
    EXPECT_NEAR(all.sum_kld, full.sum_kld, 1e-9);
    EXPECT_NEAR(all.sum_nll_base, full.sum_nll_base, 1e-9);
    EXPECT_NEAR(all.sum_nll, full.sum_nll, 1e-9);
    EXPECT_EQ(all.n_same_top, full.n_same_top);
    EXPECT_EQ(top.n_same_top, full.n_same_top);
    double coarse = 0, pr = 1, qr = 1;
    for (int64_t i = 0; i < k; i++) {
      const double p = std::exp(double(sorted[size_t(i)])) / zb, qq = std::exp(double(q[size_t(order[size_t(i)])])) / zq;
      coarse += p * std::log(p / qq);
      pr -= p, qr -= qq;
    }
    coarse += pr * std::log(pr / qr);
    EXPECT_NEAR(top.sum_kld, coarse, 1e-9);
    EXPECT_LE(top.sum_kld, full.sum_kld + 1e-12);
    EXPECT_NEAR(top.sum_topk_mass, 1 - pr, 1e-9);
  }
}

}  // namespace
}  // namespace lmpress
