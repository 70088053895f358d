#include "quant/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/to_f32.h"
#include "test_util.h"
#include "kernels/blocks.h"

namespace lmpress {
namespace {

// tests/data/ggml_blocks.gguf (made by tests/data/make_ggml_blocks.c) holds
// ggml_quantize_chunk's output for "src": "q.TYPE" without and "qw.TYPE" with
// the "imatrix" importance weights. lmpress must write the same bytes.
TEST(Quantize, BytesEqualGgmlQuantizeChunk) {
  const test::GgmlBlocks find;
  const Tensor& src_t = find("src");
  const auto src = to_f32(src_t);
  const auto imatrix = to_f32(find("imatrix"));
  const int64_t cols = src_t.shape.back(), rows = int64_t(src.size()) / cols;
  int checked = 0;
  for (const char* name : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL",
                           "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4", "IQ3_XXS", "IQ3_S", "IQ2_XXS", "IQ2_XS", "IQ2_S",
                           "IQ1_S", "IQ1_M"}) {
    for (const bool weighted : {false, true}) {
      if (!weighted && !find.has(std::string("q.") + name)) continue;  // ggml quantizes it only with an imatrix
      SCOPED_TRACE(std::string(name) + (weighted ? " with imatrix" : ""));
      const Tensor& want = find(std::string(weighted ? "qw." : "q.") + name);
      ASSERT_TRUE(has_quantizer(want.dtype));
      const size_t row_bytes = want.nbytes / size_t(rows);
      std::vector<uint8_t> got(want.nbytes);
      for (int64_t r = 0; r < rows; r++)
        ASSERT_TRUE(quantize_row(want.dtype, src.data() + r * cols, cols, got.data() + size_t(r) * row_bytes,
                                 weighted ? imatrix.data() : nullptr));
      for (int64_t r = 0; r < rows; r++)
        EXPECT_EQ(0, std::memcmp(got.data() + size_t(r) * row_bytes, want.data + size_t(r) * row_bytes, row_bytes))
            << "row " << r;
      checked++;
    }
  }
  EXPECT_EQ(checked, 41);
  std::vector<uint8_t> out(64);
  EXPECT_FALSE(quantize_row(DType::F16, src.data(), 32, out.data()));
  EXPECT_FALSE(has_quantizer(DType::BF16));
}

// A super-block with one all-zero group of 32 in the middle (pruned weights): IQ3_S stores every group's
// indices and signs at its own place, so the groups after it decode as well as those before (ggml's
// quantizer shifts them by one group there, which its own decoder then misreads).
TEST(Quantize, Iq3sBlockWithAZeroGroup) {
  std::vector<float> x(256), y(256);
  for (int i = 0; i < 256; i++) x[size_t(i)] = i / 32 == 2 ? 0.0f : std::sin(0.37f * float(i)) * (1 + float(i % 7));
  std::vector<uint8_t> q(row_bytes(DType::IQ3_S, 256));
  ASSERT_TRUE(quantize_row(DType::IQ3_S, x.data(), 256, q.data()));
  ASSERT_TRUE(dequantize_row(DType::IQ3_S, q.data(), 256, y.data()));
  for (int g = 0; g < 8; g++) {
    if (g == 2) continue;
    double err = 0, norm = 0;
    for (int i = 32 * g; i < 32 * g + 32; i++) err += (y[size_t(i)] - x[size_t(i)]) * (y[size_t(i)] - x[size_t(i)]), norm += x[size_t(i)] * x[size_t(i)];
    EXPECT_LT(std::sqrt(err / norm), 0.3) << "group " << g;
  }
}

TEST(Quantize, ZerosAndRoundTripError) {
  std::vector<float> z(64, 0.0f), y(64);
  std::vector<uint8_t> q(34 * 2);
  ASSERT_TRUE(quantize_row(DType::Q8_0, z.data(), 64, q.data()));
  ASSERT_TRUE(dequantize_row(DType::Q8_0, q.data(), 64, y.data()));
  for (float v : y) EXPECT_EQ(v, 0.0f);
  // Q8_0 of a ramp: error at most half a step (d/2) plus the f16 rounding of d.
  std::vector<float> x(64);
  for (int i = 0; i < 64; i++) x[size_t(i)] = float(i - 31) * 0.37f;
  ASSERT_TRUE(quantize_row(DType::Q8_0, x.data(), 64, q.data()));
  ASSERT_TRUE(dequantize_row(DType::Q8_0, q.data(), 64, y.data()));
  for (int i = 0; i < 64; i++) EXPECT_NEAR(y[size_t(i)], x[size_t(i)], 0.37f * 32 / 127 * 0.51f + 0.01f) << i;
}

}  // namespace
}  // namespace lmpress
