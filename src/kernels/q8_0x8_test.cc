#include "kernels/q8_0x8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kernels/qdot.h"
#include "quant/quantize.h"
#include "gemv_check.h"
#include "test_util.h"

namespace lmpress {
namespace {

// Random Q8_0 rows (one block at the extremes −128 / 127) and Q8_0 activations.
using Case = test::X8Case;
Case make_case(int64_t rows, int64_t cols, unsigned seed) {
  return test::random_x8_case(DType::Q8_0, rows, cols, seed, [](uint8_t* w) {
    auto* b = reinterpret_cast<BlockQ8_0*>(w);
    for (int i = 0; i < 32; i++) b[1].qs[i] = int8_t(i % 2 ? 127 : -128);
  });
}

Tensor q8_0_tensor(const Case& c) { return test::borrowed_matrix(DType::Q8_0, c.rows, c.cols, c.w); }

TEST(Q8_0x8, RepackRoundTripsExactly) {
  for (int64_t cols : {32, 96, 2080}) {
    const Case c = make_case(24, cols, unsigned(cols));
    const Tensor plain = q8_0_tensor(c);
    const Tensor x8 = repack_q8_0x8(plain);
    EXPECT_EQ(x8.dtype, DType::Q8_0_X8);
    EXPECT_EQ(x8.nbytes, plain.nbytes);
    test::expect_lossless_repack(plain, x8, unpack_q8_0x8(x8));
  }
  EXPECT_ANY_THROW(repack_q8_0x8(q8_0_tensor(make_case(12, 64, 1))));  // rows not a multiple of 8
}

// Each of the 8 outputs equals the plain Q8_0 · Q8_0 dot of its row (the
// scalar reference kernel), for the reference gemv and the dispatched one,
// with SIMD on and forced off.
TEST(Q8_0x8, GemvMatchesRowDots) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const Case c = make_case(16, cols, unsigned(cols) + 5);
    const Tensor x8 = repack_q8_0x8(q8_0_tensor(c));
    test::expect_group_dots(DType::Q8_0, cols, c.w.data(), reinterpret_cast<const BlockQ8_0x8*>(x8.data), 2,
                            reinterpret_cast<const BlockQ8_0*>(c.a.data()), gemv_q8_0x8_ref, gemv_q8_0x8);
  });
}

// The 4-token kernel gives each token what the one-token reference gives it,
// with SIMD on and forced off (one weight block at −128 / 127).
TEST(Q8_0x8, Gemm4MatchesGemvPerToken) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const Case c = make_case(8, cols, unsigned(cols) + 9);
    const Tensor x8 = repack_q8_0x8(q8_0_tensor(c));
    const int64_t nb = cols / 32;
    std::vector<BlockQ8_0> acts;
    for (unsigned t = 0; t < 4; t++) {
      const Case ct = make_case(8, cols, unsigned(cols) * 7 + t);  // a different activation row per token
      const auto* a = reinterpret_cast<const BlockQ8_0*>(ct.a.data());
      acts.insert(acts.end(), a, a + nb);
    }
    const auto* group = reinterpret_cast<const BlockQ8_0x8*>(x8.data);
    test::expect_gemm4_matches_gemv(
        [&](float* out, int64_t stride) { gemm4_q8_0x8(cols, group, acts.data(), nb, out, stride); },
        [&](int t, float* want) { gemv_q8_0x8_ref(cols, group, acts.data() + t * nb, want); });
  });
}

}  // namespace
}  // namespace lmpress
