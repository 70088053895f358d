#include "kernels/blocks.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/fp16.h"
#include "kernels/to_f32.h"
#include "test_util.h"

namespace lmpress {
namespace {

// tests/data/ggml_blocks.gguf holds 4x512 fixed values ("src"), ggml's
// quantization of them ("q.<TYPE>", ggml_quantize_chunk without imatrix) and
// ggml's dequantization of that ("ref.<TYPE>"), made with the llama.cpp peer.
TEST(Blocks, DequantizeMatchesGgmlBitForBit) {
  const test::GgmlBlocks find;
  const auto src = to_f32(find("src"));
  int checked = 0;
  for (const char* name : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL",
                           "IQ4_XS", "IQ3_XXS", "IQ3_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "TQ1_0",
                           "TQ2_0", "MXFP4"}) {
    SCOPED_TRACE(name);
    // ggml quantizes IQ2_XXS, IQ2_XS and IQ1_S only with an imatrix: their reference is of qw.
    const std::string qname = std::string(find.has(std::string("q.") + name) ? "q." : "qw.") + name;
    const Tensor& q = find(qname);
    const auto ref = to_f32(find(std::string("ref.") + name));
    EXPECT_EQ(dtype_name(q.dtype), std::string(name));
    std::vector<float> got(ref.size());
    ASSERT_TRUE(dequantize_row(q.dtype, q.data, q.numel(), got.data()));
    for (size_t i = 0; i < ref.size(); i++) ASSERT_EQ(f32_to_bits(got[i]), f32_to_bits(ref[i])) << i;
    // Sanity: the quantization reconstructs src (relative RMS error below 40% even for Q2_K on these
    // outlier-heavy rows, below 75% for the types of at most 2.1 bits per weight (IQ1, ternary); unrelated values would give about 1).
    double err = 0, norm = 0;
    for (size_t i = 0; i < src.size(); i++) {
      err += (got[i] - src[i]) * (got[i] - src[i]);
      norm += src[i] * src[i];
    }
    const double bpw = 8.0 * dtype_info(q.dtype).block_bytes / dtype_info(q.dtype).block_elems;
    EXPECT_LT(std::sqrt(err / norm), bpw <= 2.1 ? 0.75 : 0.4);
    // Through the tensor API, from an offset inside the tensor.
    std::vector<float> part(512);
    to_f32(q, 1024, 512, part.data());
    EXPECT_EQ(part[7], ref[1024 + 7]);
    checked++;
  }
  EXPECT_EQ(checked, 22);
}

TEST(Blocks, HandComputedQ4_0AndQ8_0) {
  BlockQ4_0 b{};
  b.d = f32_to_f16(0.5f);
  for (int j = 0; j < 16; j++) b.qs[j] = uint8_t(j | ((15 - j) << 4));
  float y[32];
  ASSERT_TRUE(dequantize_row(DType::Q4_0, reinterpret_cast<const uint8_t*>(&b), 32, y));
  for (int j = 0; j < 16; j++) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f);
    EXPECT_EQ(y[j + 16], (7 - j) * 0.5f);
  }
  BlockQ8_0 c{};
  c.d = f32_to_f16(0.25f);
  for (int j = 0; j < 32; j++) c.qs[j] = int8_t(j * 4 - 64);
  ASSERT_TRUE(dequantize_row(DType::Q8_0, reinterpret_cast<const uint8_t*>(&c), 32, y));
  for (int j = 0; j < 32; j++) EXPECT_EQ(y[j], float(j * 4 - 64) * 0.25f);
  EXPECT_FALSE(dequantize_row(DType::I32, nullptr, 0, y));
}

}  // namespace
}  // namespace lmpress
