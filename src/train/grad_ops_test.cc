// Each operation's backward against central finite differences of its own
// forward, in double precision: for a random cotangent r, the gradient of
// f(x) = Σ r ⊙ forward(x) with respect to every input.
#include "train/grad_ops.h"

#include "eval/kld.h"

#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <functional>
#include <numeric>
#include <random>

namespace lmpress::train {
namespace {

std::vector<double> randn(size_t n, unsigned seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<double> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Checks grad against (f(x + h·e_i) − f(x − h·e_i)) / 2h for every i of x.
void check_gradient(const char* what, std::vector<double>& x, const std::vector<double>& grad,
                    const std::function<double()>& f) {
  ASSERT_EQ(x.size(), grad.size());
  const double h = 1e-6;
  double worst = 0;
  for (size_t i = 0; i < x.size(); i++) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = f();
    x[i] = keep - h;
    const double down = f();
    x[i] = keep;
    const double fd = (up - down) / (2 * h);
    const double err = std::abs(fd - grad[i]) / std::max(1.0, std::abs(fd));
    worst = std::max(worst, err);
    ASSERT_LT(err, 1e-6) << what << " element " << i << ": finite difference " << fd << ", backward " << grad[i];
  }
  SCOPED_TRACE(what);
  EXPECT_LT(worst, 1e-6);
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

TEST(GradOps, LinearMatchesFiniteDifferences) {
  const int64_t n = 3, in = 5, out = 4;
  auto W = randn(size_t(out * in), 1), b = randn(size_t(out), 2), x = randn(size_t(n * in), 3), r = randn(size_t(n * out), 4);
  std::vector<double> y(size_t(n * out));
  auto f = [&] {
    linear_forward(W.data(), b.data(), x.data(), n, in, out, y.data());
    return dot(y, r);
  };
  std::vector<double> dW(W.size(), 0.0), db(b.size(), 0.0), dx(x.size(), 7.0);
  linear_backward(W.data(), x.data(), r.data(), n, in, out, dW.data(), db.data(), dx.data(), false);
  check_gradient("W", W, dW, f);
  check_gradient("bias", b, db, f);
  check_gradient("x", x, dx, f);
  // accumulate_dx adds to what dx holds.
  std::vector<double> dx2(x.size(), 1.0);
  linear_backward(W.data(), x.data(), r.data(), n, in, out, dW.data(), db.data(), dx2.data(), true);
  for (size_t i = 0; i < dx.size(); i++) EXPECT_NEAR(dx2[i], dx[i] + 1.0, 1e-12);
}

TEST(GradOps, RmsNormMatchesFiniteDifferences) {
  const int64_t n = 3, D = 6;
  auto x = randn(size_t(n * D), 5), w = randn(size_t(D), 6), r = randn(size_t(n * D), 7);
  std::vector<double> y(x.size()), rstd(static_cast<size_t>(n));
  auto f = [&] {
    rmsnorm_forward(x.data(), w.data(), n, D, 1e-5, y.data(), rstd.data());
    return dot(y, r);
  };
  f();
  std::vector<double> dx(x.size(), 0.0), dw(w.size(), 0.0);
  rmsnorm_backward(x.data(), w.data(), rstd.data(), r.data(), n, D, dx.data(), dw.data());
  check_gradient("x", x, dx, f);
  check_gradient("w", w, dw, f);
  // The forward equals the inference kernel's.
  std::vector<float> xf(x.begin(), x.begin() + D), wf(w.begin(), w.end()), yf(static_cast<size_t>(D));
  rmsnorm(xf.data(), wf.data(), D, 1e-5f, yf.data());
  for (int64_t j = 0; j < D; j++) EXPECT_NEAR(yf[size_t(j)], y[size_t(j)], 1e-5);
}

TEST(GradOps, RopeInverseIsItsBackward) {
  const int64_t heads = 2, hd = 8;
  for (RopeLayout layout : {RopeLayout::Interleaved, RopeLayout::Halves}) {
    const std::vector<float> freqs = {1.0f, 0.3f, 0.05f};  // partial: 3 of 4 pairs rotated
    auto x = randn(size_t(heads * hd), 8), r = randn(size_t(heads * hd), 9);
    auto f = [&] {
      auto y = x;
      rope_rotate(y.data(), heads, hd, 7, freqs, layout, false);
      return dot(y, r);
    };
    auto g = r;
    rope_rotate(g.data(), heads, hd, 7, freqs, layout, true);
    check_gradient("rope", x, g, f);
    // Forward as the inference kernel rotates.
    std::vector<float> xf(x.begin(), x.end());
    rope(xf.data(), heads, hd, 7, freqs, layout);
    auto y = x;
    rope_rotate(y.data(), heads, hd, 7, freqs, layout, false);
    for (size_t i = 0; i < y.size(); i++) EXPECT_NEAR(xf[i], y[i], 1e-5);
  }
}

// Tiles of 2 query rows (5 = 2 + 2 + 1) and of the whole sequence give the same outputs, and gradients equal to
// finite differences.
TEST(GradOps, GroupedQueryAttentionMatchesFiniteDifferences) {
  const int64_t n = 5, H = 4, KV = 2, hd = 3;
  const double scale = 0.7;
  auto q = randn(size_t(n * H * hd), 10), k = randn(size_t(n * KV * hd), 11), v = randn(size_t(n * KV * hd), 12);
  auto r = randn(size_t(n * H * hd), 13);
  std::vector<double> lse(size_t(H * n)), out(size_t(n * H * hd));
  int64_t tile = 2;
  auto f = [&] {
    for (int64_t g = 0; g < KV; g++)
      attention_forward(q.data(), k.data(), v.data(), n, H, KV, hd, g, scale, lse.data(), out.data(), tile);
    return dot(out, r);
  };
  tile = n;
  f();
  const auto whole = out;
  tile = 2;
  f();
  for (size_t i = 0; i < out.size(); i++) EXPECT_NEAR(out[i], whole[i], 1e-12);
  std::vector<double> dq(q.size()), dk(k.size()), dv(v.size());
  for (int64_t g = 0; g < KV; g++)
    attention_backward(q.data(), k.data(), v.data(), lse.data(), r.data(), n, H, KV, hd, g, scale, dq.data(), dk.data(),
                       dv.data(), tile);
  check_gradient("q", q, dq, f);
  check_gradient("k", k, dk, f);
  check_gradient("v", v, dv, f);
  // Causality: the first query sees the first key alone.
  f();
  for (int64_t h = 0; h < H; h++)
    for (int64_t j = 0; j < hd; j++)
      EXPECT_NEAR(out[size_t(h * hd + j)], v[size_t((h / (H / KV)) * hd + j)], 1e-12);
}

TEST(GradOps, SwiGluMatchesFiniteDifferences) {
  const int64_t n = 7;
  auto g = randn(size_t(n), 14, 2.0), u = randn(size_t(n), 15), r = randn(size_t(n), 16);
  std::vector<double> a(static_cast<size_t>(n));
  auto f = [&] {
    swiglu_forward(g.data(), u.data(), n, a.data());
    return dot(a, r);
  };
  std::vector<double> dg(static_cast<size_t>(n)), du(static_cast<size_t>(n));
  swiglu_backward(g.data(), u.data(), r.data(), n, dg.data(), du.data());
  check_gradient("gate", g, dg, f);
  check_gradient("up", u, du, f);
}

TEST(GradOps, LossesMatchFiniteDifferencesAndHandValues) {
  const int64_t rows = 3, V = 6;
  const std::vector<int32_t> targets = {2, 0, 5};
  auto teacher_d = randn(size_t(rows * V), 17, 2.0);
  std::vector<float> teacher(teacher_d.begin(), teacher_d.end());
  Loss mix;
  mix.kind = Loss::Mix, mix.ce_weight = 0.3;
  Loss kl, rkl;
  kl.kind = Loss::KL, rkl.kind = Loss::RKL;
  for (const Loss& loss : {Loss{}, kl, rkl, mix}) {
    auto z = randn(size_t(rows * V), 18, 2.0);
    auto f = [&] {
      auto zz = z;
      return loss_backward(loss, zz.data(), targets.data(), teacher.data(), rows, V, 1.0, nullptr);
    };
    auto g = z;
    loss_backward(loss, g.data(), targets.data(), teacher.data(), rows, V, 0.5, nullptr);
    for (auto& x : g) x *= 2.0;  // scale multiplies the gradient only
    check_gradient("loss", z, g, f);
  }
  // Cross-entropy by hand: logits (0, ln 2, ln 3), target 1: −log(2/6).
  std::vector<double> z = {0.0, std::log(2.0), std::log(3.0)};
  const int32_t t = 1;
  double ce = 0;
  EXPECT_NEAR(loss_backward(Loss{}, z.data(), &t, nullptr, 1, 3, 1.0, &ce), std::log(3.0), 1e-12);
  EXPECT_NEAR(ce, std::log(3.0), 1e-12);
  EXPECT_NEAR(z[1], 2.0 / 6.0 - 1.0, 1e-12);
  // KL of a distribution to itself is 0, with a zero gradient.
  std::vector<double> same = {0.5, -1.0, 2.0};
  std::vector<float> same_f = {0.5f, -1.0f, 2.0f};
  EXPECT_NEAR(loss_backward(kl, same.data(), nullptr, same_f.data(), 1, 3, 1.0, nullptr), 0.0, 1e-12);
  for (double g : same) EXPECT_NEAR(g, 0.0, 1e-12);
}

// A saved teacher's top k logits (finetune --teacher-logits): with k = V the
// losses and gradients are the full ones; with k < V the gradients are those
// of the coarsened losses (finite differences), and the forward KL is the
// KLD `kld` computes against a saved base (eval/kld.cc, its own code).
TEST(GradOps, TopKTeacherLossesAreTheCoarsenedOnes) {
  const int64_t rows = 3, V = 7;
  const std::vector<int32_t> targets = {2, 0, 5};
  auto teacher_d = randn(size_t(rows * V), 21, 2.0);
  std::vector<float> teacher(teacher_d.begin(), teacher_d.end());
  // Rows' top k (descending) and log-sum-exp, as SavedLogitsWriter keeps them.
  auto top_k = [&](int64_t k, std::vector<int32_t>& ids, std::vector<float>& top, std::vector<float>& lse) {
    ids.clear(), top.clear(), lse.clear();
    for (int64_t r = 0; r < rows; r++) {
      const float* l = teacher.data() + r * V;
      std::vector<int32_t> order(static_cast<size_t>(V));
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [l](int32_t a, int32_t b) { return l[a] > l[b]; });
      double s = 0;
      for (int64_t j = 0; j < V; j++) s += std::exp(double(l[j]));
      lse.push_back(float(std::log(s)));
      for (int64_t i = 0; i < k; i++) ids.push_back(order[size_t(i)]), top.push_back(l[order[size_t(i)]]);
    }
  };
  Loss mix, kl, rkl;
  mix.kind = Loss::Mix, mix.ce_weight = 0.3;
  kl.kind = Loss::KL, rkl.kind = Loss::RKL;
  std::vector<int32_t> ids;
  std::vector<float> top, lse;
  for (const Loss& loss : {kl, rkl, mix}) {
    const auto z = randn(size_t(rows * V), 22, 2.0);
    top_k(V, ids, top, lse);
    auto full = z, all = z;
    const double lf = loss_backward(loss, full.data(), targets.data(), teacher.data(), rows, V, 1.0, nullptr);
    const double la = loss_backward(loss, all.data(), targets.data(), TeacherLogits(ids.data(), top.data(), lse.data(), V),
                                    rows, V, 1.0, nullptr);
    EXPECT_NEAR(la, lf, 1e-5 * std::abs(lf));  // the saved log-sum-exp is a float
    for (size_t i = 0; i < full.size(); i++) EXPECT_NEAR(all[i], full[i], 1e-5) << i;
    top_k(3, ids, top, lse);
    const TeacherLogits t3(ids.data(), top.data(), lse.data(), 3);
    auto x = z;
    auto f = [&] {
      auto zz = x;
      return loss_backward(loss, zz.data(), targets.data(), t3, rows, V, 1.0, nullptr);
    };
    auto g = x;
    loss_backward(loss, g.data(), targets.data(), t3, rows, V, 1.0, nullptr);
    check_gradient("top-3 loss", x, g, f);
    if (loss.kind != Loss::KL) continue;
    KldSums sums;
    for (int64_t r = 0; r < rows; r++) {
      const std::vector<float> zf(z.begin() + r * V, z.begin() + (r + 1) * V);
      sums.add_topk(ids.data() + r * 3, top.data() + r * 3, 3, lse[size_t(r)], 0.0, zf.data(), V, 0);
    }
    EXPECT_NEAR(f(), sums.sum_kld, 1e-5 * sums.sum_kld);
    EXPECT_GT(std::abs(f() - lf), 1e-3);  // coarsening changes the loss here
  }
}

}  // namespace
}  // namespace lmpress::train
