#include "quant/gptq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>

#include "quant/block_grid.h"
#include "kernels/blocks.h"
#include "quant/quantize.h"
#include "random_problem.h"

namespace lmpress {
namespace {

using test::make_problem;
using test::Problem;

std::vector<float> dequant(DType t, const std::vector<uint8_t>& q, int64_t rows, int64_t cols) {
  std::vector<float> y(size_t(rows * cols));
  const uint64_t rb = row_bytes(t, uint64_t(cols));
  for (int64_t r = 0; r < rows; r++) dequantize_row(t, q.data() + r * rb, cols, y.data() + r * cols);
  return y;
}

// H = I: no error feedback, so each weight must take the nearest level on the
// grid the block quantizer chooses for its block (with the same importance).
TEST(Gptq, IdentityHessianIsNearestOnBlockGrid) {
  const int64_t rows = 8, cols = 512;
  const Problem p = make_problem(rows, cols, 4, 1);
  std::vector<float> I(static_cast<size_t>(cols * cols), 0.0f), ones(static_cast<size_t>(cols), 1.0f);
  for (int64_t i = 0; i < cols; i++) I[size_t(i * cols + i)] = 1.0f;
  for (DType t : {DType::Q4_0, DType::Q5_1, DType::Q8_0, DType::Q3_K, DType::Q4_K, DType::Q6_K, DType::IQ4_NL,
                  DType::IQ4_XS, DType::TQ2_0, DType::MXFP4}) {
    SCOPED_TRACE(dtype_name(t));
    const uint64_t rb = row_bytes(t, uint64_t(cols));
    const int64_t G = dtype_info(t).block_elems;
    std::vector<uint8_t> got(rows * rb), blk(dtype_info(t).block_bytes);
    gptq_quantize(p.W.data(), rows, cols, I, t, ones.data(), GptqOptions{}, got.data());
    const auto a = dequant(t, got, rows, cols);
    int64_t diff = 0;
    for (int64_t r = 0; r < rows; r++)
      for (int64_t b = 0; b < cols / G; b++) {
        const float* x = p.W.data() + r * cols + b * G;
        quantize_row(t, x, G, blk.data(), ones.data());
        BlockGrid g;
        block_grid(t, blk.data(), g);
        for (int64_t e = 0; e < G; e++) {
          const float want = g.value(int(e), g.nearest_level(int(e), x[e]));
          diff += std::fabs(a[size_t(r * cols + b * G + e)] - want) > 1e-6f * (1 + std::fabs(want));
        }
      }
    EXPECT_EQ(diff, 0);
  }
}

// The textbook algorithm (paper, Algorithm 1 without lazy batches), in double,
// with columns processed in `order` and a grid fixed per run of G processed
// columns at the run's first column: make_round(current values of the run)
// returns the rounding function of that grid.
using Rounding = std::function<double(double)>;
std::vector<float> reference_gptq(const Problem& p, double damp, int64_t G, const std::vector<int64_t>& order,
                                  const std::function<Rounding(const float*, const int64_t*)>& make_round) {
  const int64_t R = p.rows, C = p.cols;
  std::vector<double> H(size_t(C * C));
  for (int64_t i = 0; i < C; i++)
    for (int64_t j = 0; j < C; j++) H[size_t(i * C + j)] = p.H[size_t(order[size_t(i)] * C + order[size_t(j)])];
  double mean = 0;
  for (int64_t i = 0; i < C; i++) mean += H[size_t(i * C + i)];
  for (int64_t i = 0; i < C; i++) H[size_t(i * C + i)] += damp * mean / double(C);
  // Gauss-Jordan inverse.
  std::vector<double> A = H, Inv(size_t(C * C), 0.0);
  for (int64_t i = 0; i < C; i++) Inv[size_t(i * C + i)] = 1;
  for (int64_t i = 0; i < C; i++) {
    const double piv = A[size_t(i * C + i)];
    for (int64_t j = 0; j < C; j++) A[size_t(i * C + j)] /= piv, Inv[size_t(i * C + j)] /= piv;
    for (int64_t k = 0; k < C; k++)
      if (k != i) {
        const double f = A[size_t(k * C + i)];
        for (int64_t j = 0; j < C; j++) A[size_t(k * C + j)] -= f * A[size_t(i * C + j)], Inv[size_t(k * C + j)] -= f * Inv[size_t(i * C + j)];
      }
  }
  std::vector<float> Q(size_t(R * C));
  for (int64_t r = 0; r < R; r++) {
    std::vector<double> Hi = Inv, w(static_cast<size_t>(C));
    for (int64_t i = 0; i < C; i++) w[size_t(i)] = p.W[size_t(r * C + order[size_t(i)])];
    Rounding round;
    for (int64_t i = 0; i < C; i++) {
      if (i % G == 0) {  // the group's grid, from its current values
        std::vector<float> x(w.begin() + i, w.begin() + i + G);
        round = make_round(x.data(), order.data() + i);
      }
      const double q = round(w[size_t(i)]);
      Q[size_t(r * C + order[size_t(i)])] = float(q);
      const double err = (w[size_t(i)] - q) / Hi[size_t(i * C + i)];
      for (int64_t j = i + 1; j < C; j++) w[size_t(j)] -= err * Hi[size_t(i * C + j)];
      // Remove i from the inverse Hessian (OBS update).
      const double hii = Hi[size_t(i * C + i)];
      for (int64_t a = i + 1; a < C; a++)
        for (int64_t b = i + 1; b < C; b++) Hi[size_t(a * C + b)] -= Hi[size_t(a * C + i)] * Hi[size_t(i * C + b)] / hii;
    }
  }
  return Q;
}

std::vector<int64_t> identity_order(int64_t n) {
  std::vector<int64_t> o(static_cast<size_t>(n));
  std::iota(o.begin(), o.end(), 0);
  return o;
}

int64_t count_close(const std::vector<float>& got, const std::vector<float>& want) {
  int64_t same = 0;
  for (size_t i = 0; i < got.size(); i++) same += std::fabs(got[i] - want[i]) <= 1e-3f * (1 + std::fabs(want[i]));
  return same;
}

TEST(Gptq, MatchesTextbookAlgorithm) {
  const Problem p = make_problem(6, 64, 256, 2);
  std::vector<float> ones(64, 1.0f);
  GptqOptions o;
  o.block = 32;  // lazy batches of 32 columns, two batches
  std::vector<uint8_t> q(6 * row_bytes(DType::Q8_0, 64));
  gptq_quantize(p.W.data(), 6, 64, p.H, DType::Q8_0, ones.data(), o, q.data());
  const auto got = dequant(DType::Q8_0, q, 6, 64);
  const auto want = reference_gptq(p, o.damp, 32, identity_order(64), [&](const float* x, const int64_t*) -> Rounding {
    BlockQ8_0 b{};
    quantize_row(DType::Q8_0, x, 32, reinterpret_cast<uint8_t*>(&b), ones.data());
    BlockGrid g;
    block_grid(DType::Q8_0, reinterpret_cast<uint8_t*>(&b), g);
    const double d = g.scale[0];
    return [d](double v) { return d > 0 ? std::clamp(std::round(v / d), -128.0, 127.0) * d : 0.0; };
  });
  EXPECT_GE(count_close(got, want), int64_t(got.size()) - 2);  // float vs double may flip a rare near-tie
}

// int-N groups: a grid per group (scale · (q − zero)), min-max or clipped by
// diag(H)-weighted error; with act-order the groups are runs of the processing
// order and g_idx says which.
TEST(Gptq, IntGroupsMatchTextbookAlgorithm) {
  const Problem p = make_problem(8, 128, 512, 4);
  for (bool act_order : {false, true}) {
    for (const char* type : {"int4-g32-asym", "int3-g32"}) {
     for (bool clip : {false, true}) {
      SCOPED_TRACE(std::string(type) + (act_order ? " act-order" : "") + (clip ? " clip" : ""));
      const IntGroupSpec spec = *parse_int_group_type(type);
      GptqOptions o;
      o.block = 64;
      o.act_order = act_order;
      o.int_clip_search = clip;
      const IntGroupTensor t = gptq_quantize_int(p.W.data(), 8, 128, p.H, spec, o);
      std::vector<int64_t> order = identity_order(128);
      if (act_order)
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return p.H[size_t(a * 128 + a)] > p.H[size_t(b * 128 + b)]; });
      const auto want = reference_gptq(p, o.damp, 32, order, [&](const float* x, const int64_t* members) -> Rounding {
        float w[32];
        for (int e = 0; e < 32; e++) w[e] = p.H[size_t(members[e] * 128 + members[e])];
        IntGroupRtnOptions so;
        so.clip_search = clip;
        const GroupGrid g = clip ? search_group_grid(spec, x, 32, w, so) : int_group_grid(spec, x, 32);
        const int maxq = spec.max_level();
        return [g, maxq](double v) { return g.scale * (g.level(float(v), maxq) - g.zero); };
      });
      const auto got = t.dequantize();
      EXPECT_GE(count_close(got, want), int64_t(got.size()) - 4);
      for (int64_t k = 0; k < 128; k++) EXPECT_EQ(t.g_idx[size_t(order[size_t(k)])], k / 32);
      EXPECT_EQ(t.spec.act_order, act_order);
     }
    }
  }
}

// On correlated inputs GPTQ's output error is well below round-to-nearest's.
TEST(Gptq, BeatsRoundToNearestOnOutputError) {
  const int64_t rows = 32, cols = 256;
  const Problem p = make_problem(rows, cols, 1024, 3);
  for (DType t : {DType::Q4_0, DType::Q3_K, DType::Q4_K, DType::Q2_K}) {
    SCOPED_TRACE(dtype_name(t));
    const uint64_t rb = row_bytes(t, uint64_t(cols));
    std::vector<uint8_t> g(rows * rb), r(rows * rb);
    std::vector<float> diag(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; c++) diag[size_t(c)] = p.H[size_t(c * cols + c)];
    gptq_quantize(p.W.data(), rows, cols, p.H, t, nullptr, GptqOptions{}, g.data());
    for (int64_t i = 0; i < rows; i++) quantize_row(t, p.W.data() + i * cols, cols, r.data() + i * rb, diag.data());
    const double eg = relative_output_error(p.W.data(), dequant(t, g, rows, cols).data(), rows, cols, p.H);
    const double er = relative_output_error(p.W.data(), dequant(t, r, rows, cols).data(), rows, cols, p.H);
    EXPECT_LT(eg, 0.8 * er) << "gptq " << eg << " rtn " << er;
    GptqOptions ao;
    ao.act_order = true;
    gptq_quantize(p.W.data(), rows, cols, p.H, t, nullptr, ao, g.data());
    const double ea = relative_output_error(p.W.data(), dequant(t, g, rows, cols).data(), rows, cols, p.H);
    EXPECT_LT(ea, er) << "act-order " << ea << " rtn " << er;
  }
  std::vector<float> diag(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; c++) diag[size_t(c)] = p.H[size_t(c * cols + c)];
  for (const char* type : {"int4-g128", "int3-g64-asym", "int2-g32-asym", "int8-ch"}) {
    SCOPED_TRACE(type);
    const IntGroupSpec spec = *parse_int_group_type(type);
    const auto g = gptq_quantize_int(p.W.data(), rows, cols, p.H, spec, GptqOptions{}).dequantize();
    const auto r = int_group_rtn(p.W.data(), rows, cols, spec, diag.data(), {}).dequantize();
    const double eg = relative_output_error(p.W.data(), g.data(), rows, cols, p.H);
    const double er = relative_output_error(p.W.data(), r.data(), rows, cols, p.H);
    EXPECT_LT(eg, 0.8 * er) << "gptq " << eg << " rtn " << er;
  }
}

TEST(Gptq, RejectsBadShapes) {
  std::vector<float> W(64), H(64 * 64, 0.0f);
  std::vector<uint8_t> out(1024);
  EXPECT_THROW(gptq_quantize(W.data(), 1, 64, H, DType::Q4_K, nullptr, {}, out.data()), std::exception);
  EXPECT_THROW(gptq_quantize(W.data(), 1, 64, std::vector<float>(10), DType::Q4_0, nullptr, {}, out.data()),
               std::exception);
}

}  // namespace
}  // namespace lmpress
