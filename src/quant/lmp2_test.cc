#include "quant/lmp2.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>

#include "kernels/blocks.h"
#include "kernels/lmp2.h"
#include "kernels/matmul.h"
#include "kernels/qdot.h"
#include "core/tensor.h"
#include "quant/quantize.h"
#include "random_problem.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::gaussian;

std::vector<float> dequant(const std::vector<uint8_t>& q, int64_t rows, int64_t cols) {
  std::vector<float> y(size_t(rows * cols));
  const uint64_t rb = row_bytes(DType::LMP2, uint64_t(cols));
  for (int64_t r = 0; r < rows; r++) dequantize_row(DType::LMP2, q.data() + r * rb, cols, y.data() + r * cols);
  return y;
}

// The search equals a brute-force scan of all 2¹⁶ points.
TEST(Lmp2, NearestIsTheClosestOfAllCodes) {
  std::vector<std::array<int8_t, 8>> all(1 << 16);
  for (int c = 0; c < 1 << 16; c++) lmp2_decode(uint16_t(c), all[size_t(c)].data());
  const auto z = gaussian(8 * 300, 3, 4.0f);
  for (int t = 0; t < 300; t++) {
    const float* v = z.data() + 8 * t;
    double best = 1e30;
    for (const auto& p : all) {
      double d = 0;
      for (int j = 0; j < 8; j++) d += (v[j] - p[size_t(j)]) * (v[j] - p[size_t(j)]);
      best = std::min(best, d);
    }
    int8_t q[8];
    lmp2_nearest(v, q);
    double got = 0;
    for (int j = 0; j < 8; j++) got += (v[j] - q[j]) * (v[j] - q[j]);
    EXPECT_NEAR(got, best, 1e-3 * (1 + best)) << t;
  }
}

// On Gaussian weights the E8P codebook's mean squared error per value is below
// what 2-bit scalar quantization can reach (Lloyd–Max: 0.1175 σ²); with an
// outlier per block, the rotation keeps it there where IQ2_XXS (no rotation) loses.
TEST(Lmp2, RoundTripErrorBeatsScalarTwoBits) {
  const int64_t rows = 16, cols = 1024;
  auto W = gaussian(rows * cols, 7);
  std::vector<uint8_t> q(rows * row_bytes(DType::LMP2, cols));
  quantize_rows(DType::LMP2, W.data(), rows, cols, q.data());
  const auto y = dequant(q, rows, cols);
  double se = 0;
  for (size_t i = 0; i < W.size(); i++) se += double(W[i] - y[i]) * (W[i] - y[i]);
  const double mse = se / double(W.size());
  EXPECT_LT(mse, 0.1175);
  EXPECT_GT(mse, 0.05);  // 2 bits cannot do much better (rate–distortion bound 0.0625)
  std::printf("lmp2 Gaussian MSE %.4f\n", mse);
}

// The int8 dot (reference and SIMD) equals the dot of the dequantized row
// with the activations, up to the activations' 8-bit rounding; SIMD equals
// the reference bit for bit (the same integer sums).
TEST(Lmp2, DotMatchesDequantizedRow) {
  const int64_t n = 1024;
  const auto w = gaussian(n, 11), x = gaussian(n, 12);
  std::vector<uint8_t> q(row_bytes(DType::LMP2, n));
  quantize_row(DType::LMP2, w.data(), n, q.data());
  std::vector<float> wd(n);
  dequantize_row(DType::LMP2, q.data(), n, wd.data());
  double want = 0, norm = 0;
  for (int64_t i = 0; i < n; i++) want += double(wd[size_t(i)]) * x[size_t(i)], norm += std::fabs(wd[size_t(i)] * x[size_t(i)]);
  const QDotKernel ref = qdot_reference(DType::LMP2), fast = qdot(DType::LMP2);
  ASSERT_EQ(ref.act, ActFormat::Q8_K_HADAMARD);
  std::vector<uint8_t> a(activation_bytes(ref.act, n));
  quantize_activations(ref.act, x.data(), n, a.data());
  const float r = ref.fn(n, q.data(), a.data());
  EXPECT_NEAR(r, want, 0.02 * norm);
  EXPECT_NEAR(fast.fn(n, q.data(), a.data()), r, 1e-5f * (1 + std::fabs(r)));  // float sums in another order
}

// A matmul on LMP2 weights, decoding (1–3 tokens: the int8 dots on rotated
// activations) and prompt batches (the int8 panels, rotated activations),
// with SIMD and scalar kernels, gives the dequantized weights' products up to
// the activations' 8-bit rounding.
TEST(Lmp2, MatmulMatchesDequantizedWeights) {
  const int64_t rows = 24, cols = 768;
  const auto W = gaussian(rows * cols, 31);
  std::vector<uint8_t> q(rows * row_bytes(DType::LMP2, cols));
  quantize_rows(DType::LMP2, W.data(), rows, cols, q.data());
  const auto Wd = dequant(q, rows, cols);
  const Tensor w = make_owned_tensor("w", DType::LMP2, {rows, cols}, q);
  for (bool simd : {true, false}) {
    qdot_use_simd(simd);
    for (int64_t n : {1, 3, 9}) {
      SCOPED_TRACE(testing::Message() << "simd " << simd << " tokens " << n);
      const auto x = gaussian(n * cols, unsigned(40 + n));
      std::vector<float> y(size_t(n * rows));
      matmul(w, x.data(), n, y.data());
      for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
          double want = 0, mag = 0;
          for (int64_t i = 0; i < cols; i++) {
            want += double(Wd[size_t(r * cols + i)]) * x[size_t(t * cols + i)];
            mag += std::fabs(Wd[size_t(r * cols + i)] * x[size_t(t * cols + i)]);
          }
          EXPECT_NEAR(y[size_t(t * rows + r)], want, 0.01 * mag);
        }
    }
  }
  qdot_use_simd(true);
}

// With an imatrix, the weighted error Σ importance·(ŵ − w)² is lower than
// RTN's (which cannot use it: rotated, a diagonal weight is flat), and a row
// alone gets what it gets among all rows (rows are independent in GPTQ).
TEST(Lmp2, ImportanceLowersTheWeightedError) {
  const int64_t rows = 16, cols = 512;
  const auto W = gaussian(rows * cols, 51);
  std::mt19937 rng(52);
  std::normal_distribution<float> nd(0.0f, 1.5f);
  std::vector<float> imp(static_cast<size_t>(cols));
  for (auto& v : imp) v = std::exp(nd(rng));
  const uint64_t rb = row_bytes(DType::LMP2, cols);
  std::vector<uint8_t> rtn(rows * rb), weighted(rows * rb), one(rb);
  quantize_rows(DType::LMP2, W.data(), rows, cols, rtn.data());
  quantize_rows(DType::LMP2, W.data(), rows, cols, weighted.data(), imp.data());
  auto err = [&](const std::vector<uint8_t>& q) {
    const auto y = dequant(q, rows, cols);
    double e = 0;
    for (int64_t i = 0; i < rows * cols; i++) e += imp[size_t(i % cols)] * double(y[size_t(i)] - W[size_t(i)]) * (y[size_t(i)] - W[size_t(i)]);
    return e;
  };
  const double e_rtn = err(rtn), e_imp = err(weighted);
  std::printf("weighted error rtn %.4g imatrix %.4g\n", e_rtn, e_imp);
  EXPECT_LT(e_imp, 0.85 * e_rtn);
  quantize_row(DType::LMP2, W.data() + 5 * cols, cols, one.data(), imp.data());
  EXPECT_EQ(std::memcmp(one.data(), weighted.data() + 5 * rb, rb), 0);
}

// GPTQ onto LMP2: with correlated inputs, error feedback lowers the output
// error against RTN; with H = I it is RTN on the rotated weights (bit for bit:
// the same scale search and nearest points, nothing fed back).
TEST(Lmp2, GptqLowersOutputErrorAndIsRtnForIdentityHessian) {
  const int64_t rows = 32, cols = 512;
  const auto p = test::make_problem(rows, cols, 2048, 21);
  const uint64_t rb = row_bytes(DType::LMP2, cols);
  std::vector<uint8_t> rtn(rows * rb), gq(rows * rb);
  quantize_rows(DType::LMP2, p.W.data(), rows, cols, rtn.data());
  gptq_quantize(p.W.data(), rows, cols, p.H, DType::LMP2, nullptr, GptqOptions{}, gq.data());
  const double e_rtn = test::output_error(p, dequant(rtn, rows, cols));
  const double e_gptq = test::output_error(p, dequant(gq, rows, cols));
  std::printf("output error rtn %.4g gptq %.4g\n", e_rtn, e_gptq);
  EXPECT_LT(e_gptq, 0.8 * e_rtn);
  std::vector<float> I(size_t(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; i++) I[size_t(i * cols + i)] = 1;
  GptqOptions o;
  o.damp = 0;
  gptq_quantize(p.W.data(), rows, cols, I, DType::LMP2, nullptr, o, gq.data());
  EXPECT_EQ(std::memcmp(gq.data(), rtn.data(), gq.size()), 0);
}

}  // namespace
}  // namespace lmpress
