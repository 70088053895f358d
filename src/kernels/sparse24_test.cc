#include "kernels/sparse24.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/fp16.h"
#include "kernels/qdot.h"
#include "quant/quantize.h"

namespace lmpress {
namespace {

// A random 2:4 row: per group of 4, 0, 1 or 2 nonzeros at random positions (some -0.0).
std::vector<uint16_t> sparse_row(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  std::vector<uint16_t> w(static_cast<size_t>(n), f32_to_f16(0.0f));
  for (int64_t g = 0; g < n; g += 4) {
    const int keep = int(rng() % 3);
    int a = int(rng() % 4), b = int(rng() % 4);
    if (keep >= 1) w[size_t(g + a)] = f32_to_f16(nd(rng));
    if (keep == 2) w[size_t(g + b)] = f32_to_f16(nd(rng));
    if (keep == 0 && rng() % 2) w[size_t(g + a)] = 0x8000;  // -0.0 counts as zero
  }
  return w;
}

TEST(Sparse24, PackRoundTripsAndRejectsDenseGroups) {
  std::mt19937 rng(1);
  for (int64_t n : {32, 64, 96, 4096}) {
    const auto w = sparse_row(n, rng);
    ASSERT_TRUE(is_2of4_f16(w.data(), n));
    std::vector<BlockF16_2of4> b(static_cast<size_t>(n / 32));
    ASSERT_TRUE(pack_2of4_f16(w.data(), n, b.data()));
    std::vector<float> y(static_cast<size_t>(n));
    dequantize_2of4_f16(b.data(), n, y.data());
    for (int64_t i = 0; i < n; i++) EXPECT_EQ(y[size_t(i)], f16_to_f32(w[size_t(i)])) << i;
  }
  auto w = sparse_row(64, rng);
  w[40] = w[41] = w[42] = f32_to_f16(1.0f);  // three nonzeros in group 10
  EXPECT_FALSE(is_2of4_f16(w.data(), 64));
  std::vector<BlockF16_2of4> b(2);
  EXPECT_FALSE(pack_2of4_f16(w.data(), 64, b.data()));
}

// The block layout by hand: group 0 keeps positions 1 and 3, group 1 position 2 (and a zero at 0).
TEST(Sparse24, LayoutByHand) {
  std::vector<uint16_t> w(32, 0);
  w[1] = f32_to_f16(1.5f);
  w[3] = f32_to_f16(-2.0f);
  w[6] = f32_to_f16(0.25f);
  BlockF16_2of4 b;
  ASSERT_TRUE(pack_2of4_f16(w.data(), 32, &b));
  EXPECT_EQ(f16_to_f32(b.v[0]), 1.5f);
  EXPECT_EQ(f16_to_f32(b.v[1]), -2.0f);
  EXPECT_EQ(f16_to_f32(b.v[3]), 0.25f);
  EXPECT_EQ(b.idx[0], (1 | 3 << 2) | (0 | 2 << 2) << 4);
}

// Dot products: the scalar reference against the dense f16 dot in double, the
// best target (AVX2 where present) against the reference, on 1..129 blocks.
TEST(Sparse24, DotKernelsAgainstReference) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  const FDotFn best = fdot(DType::F16_2OF4), ref = fdot_reference(DType::F16_2OF4);
  ASSERT_NE(best, nullptr);
  ASSERT_NE(ref, nullptr);
  for (int64_t n : {32, 64, 160, 4096, 4128}) {
    const auto w = sparse_row(n, rng);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng);
    std::vector<BlockF16_2of4> b(static_cast<size_t>(n / 32));
    ASSERT_TRUE(pack_2of4_f16(w.data(), n, b.data()));
    double want = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
      want += double(f16_to_f32(w[size_t(i)])) * x[size_t(i)];
      mag += std::fabs(double(f16_to_f32(w[size_t(i)])) * x[size_t(i)]);
    }
    EXPECT_NEAR(ref(n, b.data(), x.data()), want, 1e-5 * mag) << n;
    EXPECT_NEAR(best(n, b.data(), x.data()), want, 1e-5 * mag) << n << " " << qdot_target();
  }
}

// Q8_0 blocks quantized from 2:4 rows keep exact zeros; packed, they
// dequantize to the same values, and their dot products with Q8_0 activations
// equal the dense Q8_0 kernel's (the scalar one exactly: same integer sums).
TEST(Sparse24, Q8_0PackAndDotsMatchDenseQ8_0) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (int64_t n : {32, 96, 4096}) {
    const auto h = sparse_row(n, rng);
    std::vector<float> w(static_cast<size_t>(n)), x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) w[size_t(i)] = f16_to_f32(h[size_t(i)]);
    for (auto& v : x) v = nd(rng);
    std::vector<BlockQ8_0> q(static_cast<size_t>(n / 32));
    quantize_row(DType::Q8_0, w.data(), n, reinterpret_cast<uint8_t*>(q.data()));
    ASSERT_TRUE(is_2of4_q8_0(q.data(), n / 32));
    std::vector<BlockQ8_0_2of4> s(q.size());
    ASSERT_TRUE(pack_2of4_q8_0(q.data(), n / 32, s.data()));
    std::vector<float> dense(static_cast<size_t>(n)), sparse(dense.size());
    dequantize_row(DType::Q8_0, reinterpret_cast<const uint8_t*>(q.data()), n, dense.data());
    dequantize_2of4_q8_0(s.data(), n, sparse.data());
    EXPECT_EQ(sparse, dense);
    std::vector<uint8_t> a(activation_bytes(ActFormat::Q8_0, n));
    quantize_activations(ActFormat::Q8_0, x.data(), n, a.data());
    qdot_use_simd(false);
    const float want = qdot(DType::Q8_0).fn(n, q.data(), a.data());
    EXPECT_EQ(qdot(DType::Q8_0_2OF4).fn(n, s.data(), a.data()), want) << n;
    qdot_use_simd(true);
    EXPECT_NEAR(qdot(DType::Q8_0_2OF4).fn(n, s.data(), a.data()), want, 1e-5 * (std::fabs(want) + 1)) << n << " " << qdot_target();
  }
  std::vector<BlockQ8_0> q(1);
  q[0].d = f32_to_f16(1.0f);
  for (int i = 0; i < 32; i++) q[0].qs[i] = int8_t(i % 4 == 3 ? 0 : 1);  // three nonzeros per group
  EXPECT_FALSE(is_2of4_q8_0(q.data(), 1));
  BlockQ8_0_2of4 s;
  EXPECT_FALSE(pack_2of4_q8_0(q.data(), 1, &s));
}

}  // namespace
}  // namespace lmpress
