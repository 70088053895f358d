#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "test_util.h"

namespace lmpress {
namespace {

// Per-token int8 quantization by hand: max|x| = 31.75 gives the step 0.25;
// 1.3 steps round to 1, 2.5 steps to 2 (ties to even); a zero row stays zero.
TEST(Ops, FakeQuantInt8RowsByHand) {
  std::vector<float> x = {12.5f, -31.75f, 0.325f, 0.625f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  fake_quant_int8_rows(x.data(), 2, 5);
  const float want[] = {12.5f, -31.75f, 0.25f, 0.5f, 0.0f};
  for (int i = 0; i < 5; i++) EXPECT_EQ(x[size_t(i)], want[i]) << i;
  for (int i = 5; i < 10; i++) EXPECT_EQ(x[size_t(i)], 0.0f);
}

// A gated activation act(g)·u against its definition in double, for every
// length 1..40 (vector bodies and scalar tails), gates from −100 (e^100
// overflows a float: the result must still be −0, not NaN) to 100.
void expect_gated_matches(void (*kernel)(float*, const float*, int64_t), double (*act)(double), double tol) {
  test::for_kernel_targets({0}, [&](int64_t) {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    for (int64_t n = 1; n <= 40; n++) {
      std::vector<float> g(static_cast<size_t>(n)), u(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; i++) {
        g[size_t(i)] = nd(rng) * 4;
        u[size_t(i)] = nd(rng);
      }
      if (n >= 3) g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f;
      std::vector<float> got = g;
      kernel(got.data(), u.data(), n);
      for (int64_t i = 0; i < n; i++) {
        const double x = g[size_t(i)], want = act(x) * u[size_t(i)];
        EXPECT_NEAR(got[size_t(i)], want, tol * (std::fabs(want) + 1e-3)) << "n=" << n << " i=" << i << " g=" << x;
        EXPECT_FALSE(std::isnan(got[size_t(i)]));
      }
    }
  });
}

TEST(Ops, SiluMulMatchesDefinition) {
  expect_gated_matches(silu_mul, [](double x) { return x / (1.0 + std::exp(-x)); }, 1e-6);
}

// PyTorch's gelu(approximate="tanh") (Gemma's GeGLU).
TEST(Ops, GeluTanhMulMatchesDefinition) {
  expect_gated_matches(
      gelu_tanh_mul, [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); },
      2e-6);
}

// gpt-oss's clamped SwiGLU (HF's GptOssExperts: gate clamped above at 7, up to [−7, 7], glu = gate·σ(1.702·gate),
// (up + 1)·glu), by hand on values inside and beyond the clamps.
TEST(Ops, SwigluOaiByHand) {
  const std::vector<float> gate = {-3.0f, 0.5f, 6.9f, 7.5f, 40.0f}, up = {0.25f, -9.0f, 8.0f, -0.5f, 3.0f};
  std::vector<float> got = gate;
  swiglu_oai_mul(got.data(), up.data(), int64_t(gate.size()));
  for (size_t i = 0; i < gate.size(); i++) {
    const double g = std::min(double(gate[i]), 7.0), u = std::clamp(double(up[i]), -7.0, 7.0);
    const double want = g / (1 + std::exp(-1.702 * g)) * (u + 1);
    EXPECT_NEAR(got[i], want, 1e-5 * std::fabs(want) + 1e-7) << i;
  }
  EXPECT_NEAR(got[4], 7.0 / (1 + std::exp(-1.702 * 7.0)) * 4.0, 1e-4);  // both clamped
}

// The F16C (and bf16) conversions are bit-exact with the scalar ones, including ties,
// overflow to inf, subnormals and NaN.
TEST(Ops, F16ConversionsMatchScalarOnes) {
  test::for_kernel_targets({0}, [](int64_t) {
    std::vector<float> x = {0.0f, -0.0f, 1.0f, 65504.0f, 65520.0f, 1e6f, -1e6f, 6e-8f, 3e-5f, 1.00048828125f,
                            1.00146484375f, std::nanf(""), -INFINITY, 0.1f, -2.5f, 1e-10f, 7.0f};
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    for (int i = 0; i < 100; i++) x.push_back(nd(rng) * 100);
    std::vector<uint16_t> got(x.size());
    to_f16(x.data(), int64_t(x.size()), got.data());
    for (size_t i = 0; i < x.size(); i++) {
      if (std::isnan(x[i]))
        EXPECT_TRUE(std::isnan(f16_to_f32(got[i])));
      else
        EXPECT_EQ(got[i], f32_to_f16(x[i])) << x[i];
    }
    // And back, every half including subnormals, infinities and NaNs.
    std::vector<uint16_t> all(65536);
    for (size_t i = 0; i < all.size(); i++) all[i] = uint16_t(i);
    std::vector<float> back(all.size());
    from_f16(all.data(), int64_t(all.size()), back.data());
    for (size_t i = 0; i < all.size(); i++) {
      const float want = f16_to_f32(all[i]);
      if (std::isnan(want))
        EXPECT_TRUE(std::isnan(back[i])) << i;
      else
        EXPECT_EQ(back[i], want) << i;
    }
    // bfloat16: every pattern, bit for bit (NaN payloads included: it is a shift).
    from_bf16(all.data(), int64_t(all.size()), back.data());
    for (size_t i = 0; i < all.size(); i++) EXPECT_EQ(f32_to_bits(back[i]), uint32_t(i) << 16) << i;
  });
}

}  // namespace
}  // namespace lmpress
