#include "kernels/int_blocks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_isa.h"
#include "core/fp16.h"
#include "kernels/lmp2.h"
#include "kernels/qdot.h"
#include "test_util.h"

namespace lmpress {
namespace {

const DType kTypes[] = {DType::IQ4_XS, DType::IQ3_XXS, DType::IQ3_S, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S,
                        DType::IQ1_S,  DType::IQ1_M,   DType::TQ1_0, DType::TQ2_0,   DType::MXFP4, DType::IQ4_NL};

// n values of ggml's blocks of t (tests/data/ggml_blocks.gguf: 4 rows of 512 quantized by ggml), repeated.
std::vector<uint8_t> ggml_row(DType t, int64_t n) {
  const test::GgmlBlocks find;
  const std::string name = dtype_name(t);
  const Tensor& q = find(find.has("q." + name) ? "q." + name : "qw." + name);
  std::vector<uint8_t> row(row_bytes(t, uint64_t(n)));
  for (size_t i = 0; i < row.size(); i++) row[i] = q.data[i % q.nbytes];
  return row;
}

// The reference dot equals the dot of the dequantized weights with the
// dequantized activations; every SIMD target equals the reference.
TEST(IntBlocks, DotsMatchDequantizedValues) {
  for (DType t : kTypes) {
    const QDotKernel ref_k = qdot_reference(t);
    ASSERT_NE(ref_k.fn, nullptr) << dtype_name(t);
    for (int64_t n : {int64_t(256), int64_t(2048), int64_t(4352)}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " n=" + std::to_string(n));
      const auto qw = ggml_row(t, n);
      std::mt19937 rng(static_cast<unsigned>(n));
      std::normal_distribution<float> nd;
      std::vector<float> x(static_cast<size_t>(n));
      for (auto& v : x) v = nd(rng);
      std::vector<uint8_t> qa(activation_bytes(ref_k.act, n));
      quantize_activations(ref_k.act, x.data(), n, qa.data());
      const auto [want, mag] = test::dequantized_dot(t, qw.data(), ref_k.act, qa.data(), n);
      ASSERT_GT(mag, 0);
      const float ref = ref_k.fn(n, qw.data(), qa.data());
      EXPECT_NEAR(ref, want, 1e-5 * mag);
      test::for_kernel_targets({n}, [&](int64_t) {
        const QDotKernel k = qdot(t);
        EXPECT_EQ(k.act, ref_k.act);
#if defined(__x86_64__)
        EXPECT_EQ(k.fn != ref_k.fn, qdot_simd_active());
#endif
        EXPECT_NEAR(k.fn(n, qw.data(), qa.data()), ref, 1e-5 * mag);
      });
      // An AVX-512 dot gives its AVX2 dot's bits (the AVX2 one is what the cap "avx2" runs).
      if (cpu_isa().avx512 && qdot_simd_active()) {
        const QDotFn best = qdot(t).fn;
        const std::string cap = cpu_isa_name();
        pin_cpu_isa("avx2");
        const QDotFn avx2 = qdot(t).fn;
        pin_cpu_isa(cap);
        EXPECT_EQ(best(n, qw.data(), qa.data()), avx2(n, qw.data(), qa.data()));
      }
    }
  }
}

// max_abs bounds what unpack gives, and is reached: random bytes reach every
// grid entry and sign (the AVX2 panel kernels' exactness rests on the bound).
TEST(IntBlocks, MaxAbsBoundsTheValues) {
  std::mt19937 rng(5);
  for (DType t : {DType::IQ4_XS, DType::IQ3_XXS, DType::IQ3_S, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ1_S,
                  DType::IQ1_M, DType::TQ1_0, DType::TQ2_0, DType::MXFP4, DType::IQ4_NL, DType::Q6_K, DType::Q3_K}) {
    const IntBlockFormat& f = *int_block_format(t);
    std::vector<uint8_t> block(dtype_info(t).block_bytes);
    UnpackedBlock u;
    int seen = 0;
    for (int k = 0; k < 4000; k++) {
      for (auto& b : block) b = uint8_t(rng());
      f.unpack(block.data(), u);
      for (int i = 0; i < f.elems; i++) seen = std::max(seen, std::abs(int(u.q[i])));
    }
    EXPECT_EQ(seen, f.max_abs) << dtype_name(t);
  }
  int lmp2 = 0;  // LMP2's 16-bit codes, every one
  int8_t q[8];
  for (int code = 0; code < 65536; code++) {
    lmp2_decode(uint16_t(code), q);
    for (int8_t v : q) lmp2 = std::max(lmp2, std::abs(int(v)));
  }
  EXPECT_EQ(lmp2, int_block_format(DType::LMP2)->max_abs);
}

// Blocks written by hand, values computed from the format's definition.
TEST(IntBlocks, HandComputedBlocks) {
  // IQ4_XS: d = 0.5, group 0 scale 33 (ls 1), group 1 scale 30 (ls −2), the rest 32 (ls 0).
  BlockIQ4_XS x{};
  x.d = f32_to_f16(0.5f);
  x.scales_l[0] = uint8_t(1 | (14 << 4));  // low nibbles of 33 and 30
  x.scales_h = uint16_t(2 | (1 << 2));     // high bits: 33 >> 4 = 2, 30 >> 4 = 1
  for (int i = 1; i < 4; i++) x.scales_l[i] = 0;
  for (int ib = 2; ib < 8; ib++) x.scales_h |= uint16_t(2 << 2 * ib);
  for (int j = 0; j < 16; j++) x.qs[j] = uint8_t(j | (15 - j) << 4), x.qs[16 + j] = 0x88;
  std::vector<float> y(256);
  ASSERT_TRUE(dequantize_row(DType::IQ4_XS, reinterpret_cast<const uint8_t*>(&x), 256, y.data()));
  for (int j = 0; j < 16; j++) {
    EXPECT_EQ(y[size_t(j)], 0.5f * kIQ4NLValues[j]);
    EXPECT_EQ(y[size_t(16 + j)], 0.5f * kIQ4NLValues[15 - j]);
    EXPECT_EQ(y[size_t(32 + j)], 0.5f * -2 * kIQ4NLValues[8]);
  }
  for (int j = 64; j < 256; j++) EXPECT_EQ(y[size_t(j)], 0.0f);
  // TQ2_0: byte m of each 32 holds values m, m+32, m+64, m+96 of its 128 as 2-bit (v + 1).
  BlockTQ2_0 t{};
  t.d = f32_to_f16(0.25f);
  for (int m = 0; m < 64; m++) t.qs[m] = uint8_t(0 | 1 << 2 | 2 << 4 | 1 << 6);
  ASSERT_TRUE(dequantize_row(DType::TQ2_0, reinterpret_cast<const uint8_t*>(&t), 256, y.data()));
  for (int i = 0; i < 256; i++) EXPECT_EQ(y[size_t(i)], (i % 128) < 32 ? -0.25f : (i % 128) < 64 || (i % 128) >= 96 ? 0.0f : 0.25f) << i;
  // TQ1_0: a byte of 5 trits 2,0,1,1,2 (base 3: 2·81 + 0·27 + 1·9 + 1·3 + 2 = 176) stored as ceil(176·256/243).
  BlockTQ1_0 u{};
  u.d = f32_to_f16(1.0f);
  std::memset(u.qs, (176 * 256 + 242) / 243, sizeof u.qs);
  std::memset(u.qh, (1 * 27 + 1 * 9 + 1 * 3 + 1) * 3 * 256 / 243 + 1, sizeof u.qh);  // trits 1,1,1,1 (then 0)
  ASSERT_TRUE(dequantize_row(DType::TQ1_0, reinterpret_cast<const uint8_t*>(&u), 256, y.data()));
  const float digits[5] = {1, -1, 0, 0, 1};
  for (int n = 0; n < 5; n++) EXPECT_EQ(y[size_t(32 * n)], digits[n]) << n;
  for (int i = 240; i < 256; i++) EXPECT_EQ(y[size_t(i)], 0.0f) << i;
  // MXFP4: e = 127 is 2^0, halved for the doubled levels; level 7 is 6.0 (12 · 0.5).
  EXPECT_EQ(e8m0_to_f32_half(127), 0.5f);
  EXPECT_EQ(e8m0_to_f32_half(0), std::ldexp(1.0f, -128));
  EXPECT_EQ(e8m0_to_f32_half(1), std::ldexp(1.0f, -127));
  EXPECT_EQ(e8m0_to_f32_half(254), std::ldexp(1.0f, 126));
  BlockMXFP4 m{};
  m.e = 128;
  for (int j = 0; j < 16; j++) m.qs[j] = uint8_t(7 | 15 << 4);
  ASSERT_TRUE(dequantize_row(DType::MXFP4, reinterpret_cast<const uint8_t*>(&m), 32, y.data()));
  EXPECT_EQ(y[0], 12.0f);
  EXPECT_EQ(y[16], -12.0f);
}

}  // namespace
}  // namespace lmpress
