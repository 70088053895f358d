#include "sparse/prune.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "kernels/blocks.h"
#include "quant/gptq.h"
#include "quant/quantize.h"
#include "random_problem.h"

namespace lmpress {
namespace {

using test::make_problem;
using test::Problem;

int64_t zeros(const std::vector<float>& w, int64_t from = 0, int64_t n = -1) {
  if (n < 0) n = int64_t(w.size()) - from;
  return std::count(w.begin() + from, w.begin() + from + n, 0.0f);
}

TEST(SparsityPattern, ParseAndCounts) {
  EXPECT_EQ(SparsityPattern::parse_nm("2:4").zeros_per_group(), 2);
  EXPECT_EQ(SparsityPattern::parse_nm("4:8").m, 8);
  EXPECT_DOUBLE_EQ(SparsityPattern::parse_nm("1:4").fraction(), 0.75);
  EXPECT_EQ(SparsityPattern::parse_nm("2:4").name(), "2:4");
  for (const char* bad : {"4:2", "2:2", "0:4", "2-4", "2:4x", "1:100"}) EXPECT_THROW(SparsityPattern::parse_nm(bad), Error) << bad;
  EXPECT_THROW(SparsityPattern::unstructured(1.0), Error);
  EXPECT_THROW(SparsityPattern::unstructured(-0.1), Error);
  // Cumulative rounding: three groups of 5 at 30% take 2, 1, 2 = round(4.5) of 15 -> 5 (ties away from zero).
  EXPECT_EQ(zeros_for(0.3, 0, 5) + zeros_for(0.3, 5, 5) + zeros_for(0.3, 10, 5), 5);
  EXPECT_EQ(zeros_for(0.5, 0, 7), 4);
}

// By hand: magnitude compares across the matrix, Wanda within each row by |W|·‖X_j‖.
TEST(Prune, MagnitudeAndWandaByHand) {
  // 2 x 4; column norms sqrt(x_sq) = 1, 10, 1, 1.
  std::vector<float> W{0.1f, 0.2f, 0.9f, -0.8f, 1.0f, -0.05f, 0.3f, 0.4f};
  auto m = W;
  magnitude_prune(m.data(), 2, 4, SparsityPattern::unstructured(0.5));
  EXPECT_EQ(m, (std::vector<float>{0, 0, 0.9f, -0.8f, 1.0f, 0, 0, 0.4f}));
  const float x_sq[4] = {1, 100, 1, 1};
  auto w = W;
  wanda_prune(w.data(), 2, 4, SparsityPattern::unstructured(0.5), x_sq);
  // Row 0 scores 0.1, 2, 0.9, 0.8 -> keep 0.2, 0.9; row 1 scores 1, 0.5, 0.3, 0.4 -> keep 1.0, -0.05.
  EXPECT_EQ(w, (std::vector<float>{0, 0.2f, 0.9f, 0, 1.0f, -0.05f, 0, 0}));
  auto nm = W;
  magnitude_prune(nm.data(), 2, 4, SparsityPattern::parse_nm("2:4"));
  EXPECT_EQ(nm, (std::vector<float>{0, 0, 0.9f, -0.8f, 1.0f, 0, 0, 0.4f}));
  auto nm2 = W;
  wanda_prune(nm2.data(), 2, 4, SparsityPattern::parse_nm("1:2"), x_sq);
  EXPECT_EQ(nm2, (std::vector<float>{0, 0.2f, 0.9f, 0, 1.0f, 0, 0, 0.4f}));
  EXPECT_THROW(magnitude_prune(nm.data(), 1, 6, SparsityPattern::parse_nm("2:4")), Error);
}

// Exact counts: per matrix (magnitude), per row (Wanda), per row and group (N:M).
TEST(Prune, ExactCounts) {
  const Problem p = make_problem(12, 96, 64, 7);
  std::vector<float> x_sq(96);
  for (int64_t c = 0; c < 96; c++) x_sq[size_t(c)] = p.H[size_t(c * 96 + c)];
  for (double s : {0.3, 0.5, 0.7}) {
    auto m = p.W;
    magnitude_prune(m.data(), 12, 96, SparsityPattern::unstructured(s));
    EXPECT_EQ(zeros(m), std::llround(s * 12 * 96));
    auto w = p.W;
    wanda_prune(w.data(), 12, 96, SparsityPattern::unstructured(s), x_sq.data());
    for (int64_t r = 0; r < 12; r++) EXPECT_EQ(zeros(w, r * 96, 96), std::llround(s * 96));
    auto g = p.W;
    sparsegpt_prune(g.data(), 12, 96, p.H, SparsityPattern::unstructured(s), GptqOptions{});
    EXPECT_EQ(zeros(g), std::llround(s * 12 * 96));
  }
  for (const char* nm : {"2:4", "4:8", "1:4"}) {
    const auto pat = SparsityPattern::parse_nm(nm);
    for (int method = 0; method < 3; method++) {
      auto w = p.W;
      if (method == 0) magnitude_prune(w.data(), 12, 96, pat);
      if (method == 1) wanda_prune(w.data(), 12, 96, pat, x_sq.data());
      if (method == 2) sparsegpt_prune(w.data(), 12, 96, p.H, pat, GptqOptions{});
      for (int64_t g = 0; g < 12 * 96; g += pat.m) EXPECT_EQ(zeros(w, g, pat.m), pat.zeros_per_group()) << nm << method;
    }
  }
}

// SparseGPT as the paper states it, in double, one column at a time over all
// rows: the inverse Hessian H⁻¹ (dampened) loses a column per step (OBS); the
// saliency of weight (r, k) is w² / d_k with d_k the k-th diagonal entry of the
// inverse at step k (= [U]ₖₖ² of GPTQ's Cholesky factor); masks are chosen at
// each batch of B columns (unstructured, an exact count over all rows) or each
// M columns per row (N:M) from the current, updated weights.
std::vector<float> reference_sparsegpt(const Problem& p, double damp, int64_t B, const SparsityPattern& pat) {
  const int64_t R = p.rows, C = p.cols;
  std::vector<double> H(p.H.begin(), p.H.end());
  double mean = 0;
  for (int64_t i = 0; i < C; i++) mean += H[size_t(i * C + i)];
  for (int64_t i = 0; i < C; i++) H[size_t(i * C + i)] += damp * mean / double(C);
  std::vector<double> A = H, Hi(size_t(C * C), 0.0);  // Gauss-Jordan inverse
  for (int64_t i = 0; i < C; i++) Hi[size_t(i * C + i)] = 1;
  for (int64_t i = 0; i < C; i++) {
    const double piv = A[size_t(i * C + i)];
    for (int64_t j = 0; j < C; j++) A[size_t(i * C + j)] /= piv, Hi[size_t(i * C + j)] /= piv;
    for (int64_t k = 0; k < C; k++)
      if (k != i) {
        const double f = A[size_t(k * C + i)];
        for (int64_t j = 0; j < C; j++) A[size_t(k * C + j)] -= f * A[size_t(i * C + j)], Hi[size_t(k * C + j)] -= f * Hi[size_t(i * C + j)];
      }
  }
  auto obs_remove = [&](std::vector<double>& M, int64_t i) {
    const double hii = M[size_t(i * C + i)];
    for (int64_t a = i + 1; a < C; a++)
      for (int64_t b = i + 1; b < C; b++) M[size_t(a * C + b)] -= M[size_t(a * C + i)] * M[size_t(i * C + b)] / hii;
  };
  std::vector<double> d(static_cast<size_t>(C));
  {
    auto M = Hi;
    for (int64_t i = 0; i < C; i++) d[size_t(i)] = M[size_t(i * C + i)], obs_remove(M, i);
  }
  std::vector<double> w(p.W.begin(), p.W.end());
  std::vector<char> mask(static_cast<size_t>(R * C), 0);
  auto sal = [&](int64_t r, int64_t k) { return w[size_t(r * C + k)] * w[size_t(r * C + k)] / d[size_t(k)]; };
  for (int64_t i = 0; i < C; i++) {
    if (!pat.is_nm() && i % B == 0) {
      const int64_t end = std::min(i + B, C);
      std::vector<std::pair<double, int64_t>> c;
      for (int64_t k = i; k < end; k++)
        for (int64_t r = 0; r < R; r++) c.push_back({sal(r, k), r * C + k});
      std::sort(c.begin(), c.end());
      const int64_t z = zeros_for(pat.sparsity, i * R, (end - i) * R);
      for (int64_t n = 0; n < z; n++) mask[size_t(c[size_t(n)].second)] = 1;
    }
    if (pat.is_nm() && i % pat.m == 0)
      for (int64_t r = 0; r < R; r++) {
        std::vector<std::pair<double, int64_t>> c;
        for (int64_t k = i; k < i + pat.m; k++) c.push_back({sal(r, k), k});
        std::sort(c.begin(), c.end());
        for (int64_t n = 0; n < pat.zeros_per_group(); n++) mask[size_t(r * C + c[size_t(n)].second)] = 1;
      }
    for (int64_t r = 0; r < R; r++) {
      const double q = mask[size_t(r * C + i)] ? 0.0 : w[size_t(r * C + i)];
      const double err = (w[size_t(r * C + i)] - q) / Hi[size_t(i * C + i)];
      w[size_t(r * C + i)] = q;
      for (int64_t j = i + 1; j < C; j++) w[size_t(r * C + j)] -= err * Hi[size_t(i * C + j)];
    }
    obs_remove(Hi, i);
  }
  return std::vector<float>(w.begin(), w.end());
}

TEST(Prune, SparseGptMatchesTextbookAlgorithm) {
  const Problem p = make_problem(6, 64, 256, 2);
  GptqOptions o;
  o.block = 32;  // two lazy batches: the second batch's mask sees the first batch's updates
  for (const auto& pat : {SparsityPattern::unstructured(0.5), SparsityPattern::unstructured(0.3),
                          SparsityPattern::parse_nm("2:4"), SparsityPattern::parse_nm("4:8")}) {
    SCOPED_TRACE(pat.name());
    auto got = p.W;
    sparsegpt_prune(got.data(), 6, 64, p.H, pat, o);
    const auto want = reference_sparsegpt(p, o.damp, 32, pat);
    int64_t same_mask = 0, close = 0;
    for (size_t i = 0; i < got.size(); i++) {
      same_mask += (got[i] == 0.0f) == (want[i] == 0.0f);
      close += std::fabs(got[i] - want[i]) <= 1e-3f * (1 + std::fabs(want[i]));
    }
    EXPECT_GE(same_mask, int64_t(got.size()) - 2);  // float vs double may swap a near-tie
    EXPECT_GE(close, int64_t(got.size()) - 4);
  }
}

// Inputs with a few outlier channels (as LLM activations have): Wanda's
// |W|·‖X_j‖ beats |W|. Correlated inputs: SparseGPT's updates beat both.
// Measured in output error tr(ΔW H ΔWᵀ).
TEST(Prune, OutputErrorOrdering) {
  Problem out = make_problem(32, 128, 512, 5);
  for (int64_t t = 0; t < out.tokens; t++)
    for (int64_t c = 0; c < out.cols; c++) out.X[size_t(t * out.cols + c)] *= c % 16 == 0 ? 20.0f : 1.0f;
  out.H.clear();
  accumulate_hessian(out.H, out.X.data(), out.tokens, out.cols);
  symmetrize_hessian(out.H, out.cols);
  const Problem cor = make_problem(32, 128, 512, 5);
  for (const auto& pat : {SparsityPattern::unstructured(0.5), SparsityPattern::parse_nm("2:4")}) {
    SCOPED_TRACE(pat.name());
    for (const Problem* p : std::vector<const Problem*>{&out, &cor}) {
      std::vector<float> x_sq(128);
      for (int64_t c = 0; c < 128; c++) x_sq[size_t(c)] = p->H[size_t(c * 128 + c)];
      auto m = p->W, w = p->W, g = p->W;
      magnitude_prune(m.data(), 32, 128, pat);
      wanda_prune(w.data(), 32, 128, pat, x_sq.data());
      sparsegpt_prune(g.data(), 32, 128, p->H, pat, GptqOptions{});
      const double em = test::output_error(*p, m), ew = test::output_error(*p, w), eg = test::output_error(*p, g);
      if (p == &out) { EXPECT_LT(ew, 0.5 * em); }
      EXPECT_LT(eg, ew);
      EXPECT_LT(eg, em);
    }
  }
}

// SparseGPT with quantization: pruned weights dequantize to exactly zero, the
// count is exact, and the joint result beats pruning by magnitude then rounding.
TEST(Prune, SparseGptJointQuantization) {
  const Problem p = make_problem(16, 128, 512, 6);
  const auto pat = SparsityPattern::unstructured(0.5);
  for (DType t : {DType::Q4_0, DType::Q8_0}) {
    SCOPED_TRACE(dtype_name(t));
    const uint64_t rb = row_bytes(t, 128);
    std::vector<uint8_t> q(16 * rb);
    gptq_quantize(p.W.data(), 16, 128, p.H, t, nullptr, GptqOptions{}, q.data(), &pat);
    std::vector<float> deq(16 * 128);
    for (int64_t r = 0; r < 16; r++) dequantize_row(t, q.data() + r * rb, 128, deq.data() + r * 128);
    EXPECT_GE(zeros(deq), 16 * 64);
    EXPECT_LE(zeros(deq), 16 * 64 + 8);  // a kept weight may also round to zero
    auto m = p.W;
    magnitude_prune(m.data(), 16, 128, pat);
    std::vector<uint8_t> qm(16 * rb);
    std::vector<float> dm(16 * 128);
    for (int64_t r = 0; r < 16; r++) {
      quantize_row(t, m.data() + r * 128, 128, qm.data() + r * rb, nullptr);
      dequantize_row(t, qm.data() + r * rb, 128, dm.data() + r * 128);
    }
    EXPECT_EQ(zeros(dm) >= 16 * 64, true);  // rounding keeps magnitude's zeros
    EXPECT_LT(test::output_error(p, deq), test::output_error(p, dm));
  }
  std::vector<uint8_t> q(16 * row_bytes(DType::Q4_K, 256));
  const Problem p2 = make_problem(16, 256, 512, 6);
  EXPECT_THROW(gptq_quantize(p2.W.data(), 16, 256, p2.H, DType::Q4_K, nullptr, GptqOptions{}, q.data(), &pat), Error);
}

}  // namespace
}  // namespace lmpress
