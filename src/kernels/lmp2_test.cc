#include "kernels/lmp2.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/int_blocks.h"
#include "kernels/qdot.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::gaussian;

// Every code decodes to a point of E8 + ¼ (QuIP#'s E8P): coordinates in ℤ + ½
// before the ±¼ shift, an even coordinate sum, squared norm at most 12; the
// 256 magnitude patterns are distinct, so the 2¹⁶ codes are 2¹⁶ points.
TEST(Lmp2Kernels, CodesAreDistinctPointsOfE8PlusAQuarter) {
  std::set<std::vector<int>> points;
  for (int code = 0; code < 1 << 16; code++) {
    int8_t q[8];
    lmp2_decode(uint16_t(code), q);
    const int shift = code >> 15 ? 1 : -1;
    int sum2 = 0, norm = 0;  // in units of ½: 2·p
    for (int j = 0; j < 8; j++) {
      const int twice = (q[j] - shift) / 2;  // 4p / 2 = 2p, an odd integer
      ASSERT_EQ((q[j] - shift) % 2, 0);
      ASSERT_NE(twice % 2, 0) << code;
      sum2 += twice;
      norm += twice * twice;
    }
    EXPECT_EQ(sum2 % 4, 0) << "code " << code << ": coordinate sum not even";
    EXPECT_LE(norm, 48) << code;
    points.insert(std::vector<int>(q, q + 8));
  }
  EXPECT_EQ(points.size(), size_t(1) << 16);
}

TEST(Lmp2Kernels, RotationIsOrthonormalAndInvertible) {
  auto x = gaussian(512, 5);
  const auto x0 = x;
  lmp2_rotate(x.data(), 512);
  double n0 = 0, n1 = 0;
  for (size_t i = 0; i < x.size(); i++) n0 += double(x0[i]) * x0[i], n1 += double(x[i]) * x[i];
  EXPECT_NEAR(n1, n0, 1e-4 * n0);
  lmp2_unrotate(x.data(), 512);
  for (size_t i = 0; i < x.size(); i++) EXPECT_NEAR(x[i], x0[i], 1e-5f);
  // An outlier is spread over its whole block: every rotated value has magnitude 1/16.
  std::vector<float> e(256, 0.0f);
  e[17] = 1;
  lmp2_rotate(e.data(), 256);
  for (float v : e) EXPECT_NEAR(std::fabs(v), 1.0f / 16, 1e-6f);
}

// Blocks of random codes: lmp2_code reads back what lmp2_set_code stored; the SIMD dot equals the scalar
// reference (the same integer sums), also with every activation at ±127 and the sign of
// its weight, the largest sums the int16 accumulation of the AVX2 dot must hold; the panel decoder's chunks hold
// the unpacked values.
TEST(Lmp2Kernels, RandomCodesDotAndDecodeAsTheReference) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; trial++) {
    BlockLMP2 b{};
    b.d = f32_to_f16(0.01f * float(trial + 1));
    uint16_t codes[32];
    for (int g = 0; g < 32; g++) lmp2_set_code(b, g, codes[g] = uint16_t(rng()));
    for (int g = 0; g < 32; g++) ASSERT_EQ(lmp2_code(b, g), codes[g]);
    UnpackedBlock u;
    int_block_format(DType::LMP2)->unpack(reinterpret_cast<const uint8_t*>(&b), u);
    std::vector<float> x(256);
    if (trial % 2 == 0) {
      x = gaussian(256, unsigned(trial));
    } else {  // worst case for the int16 sums: every product positive and as large as it gets
      for (int i = 0; i < 256; i++) x[size_t(i)] = u.q[i] > 0 ? 1.0f : -1.0f;
    }
    BlockQ8_K a;
    // The activations as matmul gives them (rotated), or, for the worst case, ±1 straight into Q8_K so that the
    // int8 values are exactly ±127 with the weights' signs.
    if (trial % 2 == 0) {
      quantize_activations(ActFormat::Q8_K_HADAMARD, x.data(), 256, &a);
    } else {
      quantize_activations(ActFormat::Q8_K, x.data(), 256, &a);
      for (int i = 0; i < 256; i++) ASSERT_EQ(std::abs(a.qs[i]), 127);
    }
    int64_t isum = 0;
    for (int i = 0; i < 256; i++) isum += int64_t(u.q[i]) * a.qs[i];
    const QDotKernel ref = qdot_reference(DType::LMP2), fast = qdot(DType::LMP2);
    const float r = ref.fn(256, &b, &a);
    EXPECT_FLOAT_EQ(r, u.d * a.d * float(isum));
    // The same integers, scaled per lane before the lanes are summed: equal up to float rounding (an int16
    // overflow would be off by far more).
    EXPECT_NEAR(fast.fn(256, &b, &a), r, 1e-5 * std::fabs(u.d * a.d) * (1 + std::fabs(float(isum)))) << trial;
#if defined(__x86_64__)
    if (const auto decode = simd_avx2::panel_decoder(DType::LMP2); decode && qdot_simd_active()) {
      ChunkQ8 chunks[8];
      decode(reinterpret_cast<const uint8_t*>(&b), 1, chunks);
      for (int c = 0; c < 8; c++) {
        EXPECT_EQ(std::memcmp(chunks[c].qs, u.q + 32 * c, 32), 0) << c;
        EXPECT_EQ(chunks[c].d[0], u.d);
      }
    }
#endif
  }
}

}  // namespace
}  // namespace lmpress
