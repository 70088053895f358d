#include "kernels/i8x8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/qdot.h"
#include "test_util.h"

namespace lmpress {
namespace {

// A matrix of int8 values times a scale per row, as a W8A8 checkpoint is read:
// row 0's largest value is -128, row 1's only 100 (as GPTQ can leave it),
// row 2 all zeros, the others random with 127 somewhere.
struct Int8Matrix {
  int64_t rows, cols;
  std::vector<int8_t> q;
  std::vector<float> d, w;
  Tensor tensor() const { return make_f32_tensor("w", {rows, cols}, w); }
};

Int8Matrix int8_matrix(int64_t rows, int64_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> v(-127, 127);
  std::uniform_real_distribution<float> scale(1e-4f, 0.05f);
  Int8Matrix m{rows, cols, std::vector<int8_t>(size_t(rows * cols)), std::vector<float>(size_t(rows)),
               std::vector<float>(size_t(rows * cols))};
  for (int64_t r = 0; r < rows; r++) {
    m.d[size_t(r)] = scale(rng);
    for (int64_t i = 0; i < cols; i++) {
      int x = v(rng);
      if (r == 1) x = x * 100 / 127;
      if (r == 2) x = 0;
      m.q[size_t(r * cols + i)] = int8_t(x);
    }
    if (r == 0) m.q[size_t(r * cols + 3)] = -128;
    if (r == 1) m.q[size_t(r * cols + 5)] = 100;
    if (r > 2) m.q[size_t(r * cols + (r % cols))] = 127;
    for (int64_t i = 0; i < cols; i++) m.w[size_t(r * cols + i)] = float(m.q[size_t(r * cols + i)]) * m.d[size_t(r)];
  }
  return m;
}


TEST(I8x8, RowScalesFoundOnlyForInt8Rows) {
  const Int8Matrix m = int8_matrix(16, 96, 1);
  const auto s = int8_row_scales(m.tensor());
  ASSERT_TRUE(s);
  for (int64_t r = 0; r < m.rows; r++)  // the zero row's scale is 0
    EXPECT_NEAR((*s)[size_t(r)], r == 2 ? 0.0f : m.d[size_t(r)], 1e-6 * m.d[size_t(r)]) << r;
  // Random floats, or one value off the grid by a tenth of a step: not int8 rows.
  const std::vector<float> f = test::gaussian(16 * 96, 2);
  EXPECT_FALSE(int8_row_scales(make_f32_tensor("w", {16, 96}, f)));
  Int8Matrix off = int8_matrix(16, 96, 1);
  off.w[size_t(5 * 96 + 7)] += 0.1f * off.d[5];
  EXPECT_FALSE(int8_row_scales(off.tensor()));
}

TEST(I8x8, RepackHoldsTheValuesAndRowSums) {
  const Int8Matrix m = int8_matrix(24, 160, 3);
  const Tensor x8 = repack_i8x8(m.tensor());
  EXPECT_EQ(x8.dtype, DType::I8_X8);
  EXPECT_EQ(x8.nbytes, 3 * i8x8_group_bytes(160));
  const std::vector<uint8_t> back = unpack_i8x8(x8);
  ASSERT_EQ(back.size(), m.w.size() * sizeof(float));
  const auto* b = reinterpret_cast<const float*>(back.data());
  for (size_t i = 0; i < m.w.size(); i++) ASSERT_NEAR(b[i], m.w[i], 1e-6f * std::fabs(m.w[i])) << i;
  for (int64_t g = 0; g < 3; g++) {
    I8x8Header h;
    std::memcpy(&h, x8.data + uint64_t(g) * i8x8_group_bytes(160), sizeof h);
    for (int r = 0; r < 8; r++) {
      int32_t sum = 0;
      for (int64_t i = 0; i < 160; i++) sum += m.q[size_t((8 * g + r) * 160 + i)];
      EXPECT_EQ(h.bias[r], 128 * sum);
    }
  }
  test::expect_error([&] { repack_i8x8(int8_matrix(12, 64, 4).tensor()); }, "cannot be repacked");
}

// The SIMD quantizer gives the reference's bytes, and its values are what
// fake_quant_int8_rows rounds the row to (the W8A8 f32 path).
TEST(I8x8, TokenQuantizationMatchesFakeQuant) {
  test::for_kernel_targets({32, 72, 2048}, [](int64_t n) {
    std::vector<float> x = test::gaussian(n, unsigned(n));
    x[3] = 9.0f;  // an outlier sets the scale
    std::vector<uint8_t> got(activation_bytes(ActFormat::I8_TOKEN, n)), want(got.size());
    quantize_activations(ActFormat::I8_TOKEN, x.data(), n, got.data());
    quantize_i8_token_ref(x.data(), n, want.data());
    EXPECT_EQ(got, want);
    std::vector<float> fq = x;
    fake_quant_int8_rows(fq.data(), 1, n);
    float s;
    std::memcpy(&s, got.data(), sizeof s);
    EXPECT_EQ(s, 9.0f / 127.0f);
    for (int64_t i = 0; i < n; i++) {
      ASSERT_EQ(s * float(int(got[size_t(4 + i)]) - 128), fq[size_t(i)]) << i;
      ASSERT_EQ(fq[size_t(i)], s * std::nearbyint(x[size_t(i)] / s)) << i;  // the formula, written out
    }
    // A NaN keeps the row's scale NaN (so the outputs show it), values at the middle byte, on every target.
    std::vector<float> bad = x;
    bad[1] = std::numeric_limits<float>::quiet_NaN();
    quantize_activations(ActFormat::I8_TOKEN, bad.data(), n, got.data());
    quantize_i8_token_ref(bad.data(), n, want.data());
    EXPECT_EQ(got, want);
    std::memcpy(&s, got.data(), sizeof s);
    EXPECT_TRUE(std::isnan(s));
    const std::vector<float> zeros(size_t(n), 0.0f);
    quantize_activations(ActFormat::I8_TOKEN, zeros.data(), n, got.data());
    for (int64_t i = 0; i < n; i++) ASSERT_EQ(got[size_t(4 + i)], 128);
  });
}

// Every kernel (1, 2, 3, 4 tokens; two groups at once) gives each row and
// token the reference's float bit for bit, and the reference is the double
// dot of the dequantized weights and activations.
TEST(I8x8, KernelsMatchReference) {
  test::for_kernel_targets({32, 96, 2080}, [](int64_t cols) {
    const Int8Matrix m = int8_matrix(16, cols, unsigned(cols));
    const Tensor x8 = repack_i8x8(m.tensor());
    const size_t ab = activation_bytes(ActFormat::I8_TOKEN, cols);
    std::vector<uint8_t> act(4 * ab);
    for (int t = 0; t < 4; t++) {
      const std::vector<float> x = test::gaussian(cols, unsigned(cols) + 10 + unsigned(t));
      quantize_activations(ActFormat::I8_TOKEN, x.data(), cols, act.data() + t * ab);
    }
    const uint64_t gb = i8x8_group_bytes(cols);
    float want[4][16];
    for (int t = 0; t < 4; t++)
      for (int g = 0; g < 2; g++) {
        gemv_i8x8_ref(cols, x8.data + g * gb, act.data() + t * ab, want[t] + 8 * g);
        float s;
        std::memcpy(&s, act.data() + t * ab, sizeof s);
        for (int r = 0; r < 8; r++) {
          double dot = 0;
          for (int64_t i = 0; i < cols; i++)
            dot += double(m.w[size_t((8 * g + r) * cols + i)]) * (double(act[t * ab + 4 + i]) - 128) * s;
          EXPECT_NEAR(want[t][8 * g + r], dot, 1e-5 * (std::fabs(dot) + 1e-3)) << t << " " << g << " " << r;
        }
      }
    const X8Kernels k = i8x8_kernels();
    const auto check = [&](int tokens, int groups, const float* got) {
      for (int t = 0; t < tokens; t++)
        for (int r = 0; r < 8 * groups; r++) ASSERT_EQ(got[t * 16 + r], want[t][r]) << tokens << " " << t << " " << r;
    };
    float got[4 * 16];
    k.gemv(cols, x8.data, act.data(), nullptr, got);
    check(1, 1, got);
    ASSERT_TRUE(k.gemm4);
    k.gemm4(cols, x8.data, act.data(), nullptr, int64_t(ab), got, 16);
    check(4, 1, got);
    if (k.gemmn)
      for (int n = 1; n <= 3; n++) {
        k.gemmn(n, cols, x8.data, act.data(), nullptr, int64_t(ab), got, 16);
        check(n, 1, got);
      }
    if (k.gemm4x2) {
      k.gemm4x2(cols, x8.data, act.data(), nullptr, int64_t(ab), got, 16);
      check(4, 2, got);
    }
  });
}

// matmul on the repacked matrix: each row what the f32 weights give the
// fake-quantized activations (up to float summation order), and the same
// rows whatever the batch (a token decoded alone gets what a prompt gives it).
TEST(I8x8, MatmulMatchesFakeQuantF32AndIsBatchInvariant) {
  const int64_t rows = 40, cols = 256, n = 11;
  const Int8Matrix m = int8_matrix(rows, cols, 7);
  const Tensor f32 = m.tensor(), x8 = repack_i8x8(f32);
  EXPECT_TRUE(matmul_rows_batch_invariant(x8));
  std::vector<float> x = test::gaussian(n * cols, 8), fq = x;
  fake_quant_int8_rows(fq.data(), n, cols);
  std::vector<float> want(static_cast<size_t>(n * rows)), got(want.size()), one(static_cast<size_t>(rows));
  matmul(f32, fq.data(), n, want.data());
  matmul(x8, x.data(), n, got.data());
  for (size_t i = 0; i < got.size(); i++) ASSERT_NEAR(got[i], want[i], 1e-4f * (std::fabs(want[i]) + 1.0f)) << i;
  for (int64_t t = 0; t < n; t++) {
    matmul_decode(x8, x.data() + t * cols, 1, one.data());
    for (int64_t r = 0; r < rows; r++) ASSERT_EQ(one[size_t(r)], got[size_t(t * rows + r)]) << t << " " << r;
  }
}

}  // namespace
}  // namespace lmpress
