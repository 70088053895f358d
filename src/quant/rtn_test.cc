#include "quant/rtn.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/fp16.h"
#include "test_util.h"
#include "quant/blocks.h"

namespace lmpress {
namespace {

// The "q.TYPE" tensors of tests/data/ggml_blocks.gguf are ggml's own
// quantization (no imatrix) of "src": lmpress must write the same bytes.
TEST(Rtn, BytesEqualGgmlReferenceQuantizers) {
  const test::GgmlBlocks find;
  const auto src = to_f32(find("src"));
  for (const char* name : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"}) {
    SCOPED_TRACE(name);
    const Tensor& want = find(std::string("q.") + name);
    std::vector<uint8_t> got(want.nbytes);
    ASSERT_TRUE(quantize_row_rtn(want.dtype, src.data(), int64_t(src.size()), got.data()));
    EXPECT_EQ(0, std::memcmp(got.data(), want.data, want.nbytes));
  }
  std::vector<uint8_t> out(210 * 2);
  EXPECT_FALSE(quantize_row_rtn(DType::Q6_K, src.data(), 512, out.data()));
}

TEST(Rtn, ZerosAndRoundTripError) {
  std::vector<float> z(64, 0.0f), y(64);
  std::vector<uint8_t> q(34 * 2);
  ASSERT_TRUE(quantize_row_rtn(DType::Q8_0, z.data(), 64, q.data()));
  ASSERT_TRUE(dequantize_row(DType::Q8_0, q.data(), 64, y.data()));
  for (float v : y) EXPECT_EQ(v, 0.0f);
  // Q8_0 of a ramp: error at most half a step (d/2) plus the f16 rounding of d.
  std::vector<float> x(64);
  for (int i = 0; i < 64; i++) x[size_t(i)] = float(i - 31) * 0.37f;
  ASSERT_TRUE(quantize_row_rtn(DType::Q8_0, x.data(), 64, q.data()));
  ASSERT_TRUE(dequantize_row(DType::Q8_0, q.data(), 64, y.data()));
  for (int i = 0; i < 64; i++) EXPECT_NEAR(y[size_t(i)], x[size_t(i)], 0.37f * 32 / 127 * 0.51f + 0.01f) << i;
}

}  // namespace
}  // namespace lmpress
