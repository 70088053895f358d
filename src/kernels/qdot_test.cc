#include "kernels/qdot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_isa.h"
#include "core/fp16.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lmpress {
namespace {

std::vector<float> randn(int64_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng) * scale;
  return v;
}

// The activation quantizer writes exactly ggml's Q8_0 blocks (the quantizer
// of quant/), SIMD and scalar, random blocks and an all-zero one.
TEST(QDot, ActivationsAreGgmlQ8_0) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t n) {
    auto x = randn(n, unsigned(n));
    if (n >= 64)
      for (int i = 0; i < 32; i++) x[size_t(32 + i)] = 0;
    std::vector<BlockQ8_0> got(size_t(n / 32));
    std::vector<uint8_t> want(row_bytes(DType::Q8_0, uint64_t(n)));
    quantize_activations(ActFormat::Q8_0, x.data(), n, got.data());
    quantize_row(DType::Q8_0, x.data(), n, want.data());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
  });
}

// Ties round to even, as ggml's SIMD quantize_row_q8_0 (the weight quantizer,
// quantize_row_q8_0_ref, rounds them away from zero): with amax 127 the scale
// is 1, and -3.5 .. 3.5 become -4 -2 -2 0 0 2 2 4.
TEST(QDot, ActivationsQ8_0RoundTiesToEven) {
  test::for_kernel_targets({32}, [](int64_t) {
    std::vector<float> x(32);
    for (int i = 0; i < 32; i++) x[size_t(i)] = i == 0 ? 127.0f : float(i % 8) - 3.5f;
    BlockQ8_0 b;
    quantize_activations(ActFormat::Q8_0, x.data(), 32, &b);
    const int8_t want[8] = {-4, -2, -2, 0, 0, 2, 2, 4};
    EXPECT_EQ(b.qs[0], 127);
    for (int i = 1; i < 32; i++) EXPECT_EQ(b.qs[i], want[i % 8]) << i;
    EXPECT_EQ(f16_to_f32(b.d), 1.0f);
  });
}

// Reference = the dot product of the dequantized weight and activation rows;
// SIMD = reference, on every length shape (1 block, odd block counts, long rows).
// ggml's quantize_row_q8_K_ref by hand on one block: the value of largest
// magnitude maps to −127 (iscale = −127/max), bsums are 16-element sums.
TEST(QDot, ActivationsQ8_K) {
  std::vector<float> x(256, 0.0f);
  x[3] = 2.0f;
  x[17] = -1.0f;
  x[200] = 0.5f;
  BlockQ8_K b;
  quantize_activations(ActFormat::Q8_K, x.data(), 256, &b);
  EXPECT_FLOAT_EQ(b.d, 1 / (-127.0f / 2.0f));
  EXPECT_EQ(b.qs[3], -127);
  EXPECT_EQ(b.qs[17], 64);  // -1 · -63.5 = 63.5 -> 64 (round half to even)
  EXPECT_EQ(b.qs[200], -32);  // 0.5 · -63.5 = -31.75
  EXPECT_EQ(b.bsums[0], -127);
  EXPECT_EQ(b.bsums[1], 64);
  EXPECT_EQ(b.bsums[12], -32);
}

// Whether this architecture has a SIMD dot for t (every type on x86-64).
bool has_simd_dot(DType t) {
#if defined(__aarch64__)
  for (DType n : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K})
    if (t == n) return true;
  return false;
#else
  (void)t;
  return true;
#endif
}

TEST(QDot, ReferenceAndSimdAgree) {
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::IQ4_NL, DType::Q2_K,
                  DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const bool k = dtype_info(t).block_elems == QK_K;
    for (int64_t n : k ? std::vector<int64_t>{256, 768, 4352} : std::vector<int64_t>{32, 96, 288, 4128}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " n=" + std::to_string(n));
      const auto w = randn(n, unsigned(n), 0.05f), x = randn(n, unsigned(n) + 7);
      std::vector<uint8_t> qw(row_bytes(t, uint64_t(n)));
      quantize_row(t, w.data(), n, qw.data());
      const QDotKernel ref_k = qdot_reference(t);
      ASSERT_NE(ref_k.fn, nullptr);
      std::vector<uint8_t> qa(activation_bytes(ref_k.act, n));
      quantize_activations(ref_k.act, x.data(), n, qa.data());
      const auto [want, mag] = test::dequantized_dot(t, qw.data(), ref_k.act, qa.data(), n);
      const float ref = ref_k.fn(n, qw.data(), qa.data());
      EXPECT_NEAR(ref, want, 1e-5 * mag);
      // Every target's kernel (AVX2; NEON with and without SDOT) against the reference.
      test::for_kernel_targets({n}, [&](int64_t) {
        const QDotKernel k = qdot(t);
        EXPECT_EQ(k.act, ref_k.act);
        EXPECT_EQ(k.fn != ref_k.fn, qdot_simd_active() && has_simd_dot(t));
        EXPECT_NEAR(k.fn(n, qw.data(), qa.data()), ref, 1e-5 * mag);
      });
    }
  }
  // Extreme values: Q8_0 weights of ±127 and −128 (possible in foreign files) against ±127 activations.
  BlockQ8_0 w{}, a{};
  w.d = a.d = 0x3C00;  // 1.0
  for (int i = 0; i < 32; i++) {
    w.qs[i] = int8_t(i % 3 == 0 ? -128 : i % 3 == 1 ? 127 : -127);
    a.qs[i] = int8_t(i % 2 ? 127 : -127);
  }
  const float ref = qdot_reference(DType::Q8_0).fn(32, &w, &a);
  test::for_kernel_targets({32}, [&](int64_t) { EXPECT_EQ(qdot(DType::Q8_0).fn(32, &w, &a), ref); });
  EXPECT_EQ(qdot_reference(DType::F16).fn, nullptr);
}

// A kernel taking several tokens per row unpacking gives each token what the
// one-token kernel gives it, bit for bit (batch invariance rests on it).
TEST(QDot, MultiTokenKernelsEqualOneTokenDots) {
  for (DType t : {DType::Q6_K}) {
    const int64_t n = 768;
    const auto w = randn(n, 3, 0.05f);
    std::vector<uint8_t> qw(row_bytes(t, uint64_t(n)));
    quantize_row(t, w.data(), n, qw.data());
    test::for_kernel_targets({n}, [&](int64_t) {
      const QDotKernel k = qdot(t);
      if (!k.multi) return;
      const size_t ab = activation_bytes(k.act, n);
      std::vector<uint8_t> qa(4 * ab);
      for (int j = 0; j < 4; j++) quantize_activations(k.act, randn(n, unsigned(20 + j)).data(), n, qa.data() + j * ab);
      for (int64_t tokens = 1; tokens <= 4; tokens++) {
        float out[4] = {-1, -1, -1, -1};
        k.multi(n, qw.data(), qa.data(), ab, tokens, out);
        for (int64_t j = 0; j < tokens; j++) EXPECT_EQ(out[j], k.fn(n, qw.data(), qa.data() + j * ab)) << tokens;
        for (int64_t j = tokens; j < 4; j++) EXPECT_EQ(out[j], -1.0f);
      }
    });
  }
  EXPECT_TRUE(!qdot_simd_active() || !cpu_isa().avx2 || qdot(DType::Q6_K).multi);
}

// F16 and BF16 rows against f32 activations, on lengths with and without a
// vector tail: reference = the double-precision dot of the converted values.
TEST(QDot, FloatWeights) {
  for (DType t : {DType::F16, DType::BF16}) {
    for (int64_t n : {1, 7, 16, 24, 29, 37, 288, 2051}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " n=" + std::to_string(n));
      const auto w = randn(n, 3), x = randn(n, 4);
      std::vector<uint16_t> h(static_cast<size_t>(n));
      double want = 0, mag = 0;
      for (int64_t i = 0; i < n; i++) {
        h[size_t(i)] = t == DType::F16 ? f32_to_f16(w[size_t(i)]) : f32_to_bf16(w[size_t(i)]);
        const double wv = t == DType::F16 ? f16_to_f32(h[size_t(i)]) : bits_to_f32(uint32_t(h[size_t(i)]) << 16);
        want += wv * x[size_t(i)];
        mag += std::fabs(wv * x[size_t(i)]);
      }
      EXPECT_NEAR(fdot_reference(t)(n, h.data(), x.data()), want, 1e-5 * mag);
      test::for_kernel_targets({n}, [&](int64_t) {
        EXPECT_EQ(fdot(t) != fdot_reference(t), qdot_simd_active());
        EXPECT_NEAR(fdot(t)(n, h.data(), x.data()), want, 1e-5 * mag);
      });
    }
  }
  EXPECT_EQ(fdot(DType::Q4_0), nullptr);
}

}  // namespace
}  // namespace lmpress
