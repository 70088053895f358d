#include "kernels/int_panels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "core/cpu_isa.h"
#include "core/fp16.h"
#include "kernels/int_blocks.h"
#include "kernels/matmul.h"
#include "kernels/qdot.h"
#include "kernels/to_f32.h"
#include "test_util.h"

namespace lmpress {
namespace {

// 16 rows of 512 of ggml's blocks of t (tests/data/ggml_blocks.gguf, 4 rows repeated) as a weight tensor.
Tensor ggml_weight(DType t) {
  const test::GgmlBlocks find;
  const std::string name = dtype_name(t);
  const Tensor& q = find(find.has("q." + name) ? "q." + name : "qw." + name);
  auto bytes = std::make_shared<std::vector<uint8_t>>(4 * q.nbytes);
  for (size_t i = 0; i < bytes->size(); i++) (*bytes)[i] = q.data[i % q.nbytes];
  Tensor w;
  w.name = "w." + name;
  w.dtype = t;
  w.shape = {16, 512};
  w.data = bytes->data();
  w.nbytes = bytes->size();
  w.owner = bytes;
  return w;
}

// The decoded panels hold the weights' values: exactly up to the f16 rounding of
// the chunk scales where a chunk has one group scale (2^-11 relative, half a
// subnormal step 2^-25 times the value below f16's normal range: row 3 of the
// fixture has values near 1e-4), within Q8_0's rounding where its two 16-value
// halves differ (IQ2_XS, IQ2_S, IQ1_M).
TEST(IntPanels, DecodedRowsHoldTheWeights) {
  for (DType t : {DType::IQ4_XS, DType::IQ3_XXS, DType::IQ3_S, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ1_S,
                  DType::IQ1_M, DType::TQ1_0, DType::TQ2_0}) {
    SCOPED_TRACE(dtype_name(t));
    const Tensor w = ggml_weight(t);
    const bool halves = int_block_format(t)->group < 32;
    std::vector<uint8_t> q8(8 * 512 / 32 * sizeof(BlockQ8_0)), scalar(q8.size());
    for (int64_t g = 0; g < 2; g++) {
      qdot_use_simd(false);
      ASSERT_TRUE(decode_int_panel_rows(w, g, scalar.data()));
      qdot_use_simd(true);
      ASSERT_TRUE(decode_int_panel_rows(w, g, q8.data()));
      EXPECT_EQ(q8, scalar);  // the AVX2 decoders make the scalar decoder's bytes
      std::vector<float> got(8 * 512), want(8 * 512);
      ASSERT_TRUE(dequantize_row(DType::Q8_0, q8.data(), 8 * 512, got.data()));
      to_f32(w, g * 8 * 512, 8 * 512, want.data());
      for (size_t b = 0; b < got.size() / 32; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(want[32 * b + i]));
        for (int i = 0; i < 32; i++) {
          const float wv = want[32 * b + i], gv = got[32 * b + i];
          const float f16_step = std::fabs(wv) / 2048 + std::ldexp(1.0f, -25) * 127;
          EXPECT_NEAR(gv, wv, (halves ? amax / 127 * 0.51f : 0.0f) + f16_step) << b << " " << i;
        }
      }
    }
  }
}

// Prompt batches through the panels agree with the dequantized weights times the
// Q8_0-rounded activations up to the panels' own rounding (as bounded above), for
// 4-token tiles and the 1-3 tokens left.
TEST(IntPanels, PromptBatchesMatchFloatProducts) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (DType t : {DType::IQ4_XS, DType::IQ3_S, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ1_M, DType::TQ2_0}) {
    SCOPED_TRACE(dtype_name(t));
    const Tensor w = ggml_weight(t);
    const bool halves = int_block_format(t)->group < 32;
    std::vector<float> wf(16 * 512), amax(16 * 512 / 32, 0.0f);
    to_f32(w, 0, 16 * 512, wf.data());
    for (size_t i = 0; i < wf.size(); i++) amax[i / 32] = std::max(amax[i / 32], std::fabs(wf[i]));
    for (int64_t n : {4, 7, 18}) {
      std::vector<float> x(static_cast<size_t>(n * 512)), xq(x.size()), y(static_cast<size_t>(n * 16), -1.0f);
      for (auto& v : x) v = nd(rng);
      std::vector<uint8_t> q8(activation_bytes(ActFormat::Q8_0, 512));
      for (int64_t tk = 0; tk < n; tk++) {
        quantize_activations(ActFormat::Q8_0, x.data() + tk * 512, 512, q8.data());
        dequantize_row(DType::Q8_0, q8.data(), 512, xq.data() + tk * 512);
      }
      if (!matmul_int_panels(w, x.data(), n, y.data())) {
        EXPECT_FALSE(qdot_simd_active() && cpu_isa().avx2);  // the path exists wherever AVX2 does
        continue;
      }
      for (int64_t tk = 0; tk < n; tk++)
        for (int64_t r = 0; r < 16; r++) {
          double want = 0, bound = 1e-6;
          for (int64_t i = 0; i < 512; i++) {
            const size_t wi = size_t(r * 512 + i);
            const double xv = xq[size_t(tk * 512 + i)];
            want += double(wf[wi]) * xv;
            bound += (std::fabs(wf[wi]) / 1024 + std::ldexp(1.0, -25) * 127 + (halves ? amax[wi / 32] / 254 : 0.0)) *
                     std::fabs(xv);
          }
          EXPECT_NEAR(y[size_t(tk * 16 + r)], want, bound) << "token " << tk << " row " << r;
        }
      // matmul takes this path for prompt batches.
      std::vector<float> y2(y.size());
      matmul(w, x.data(), n, y2.data());
      EXPECT_EQ(y, y2);
    }
  }
}

}  // namespace
}  // namespace lmpress
