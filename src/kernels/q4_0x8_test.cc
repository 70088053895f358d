#include "kernels/q4_0x8.h"

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

// Random Q4_0 rows (some blocks all −8 … +7 extremes) and Q8_0 activations.
using Case = test::X8Case;
Case make_case(int64_t rows, int64_t cols, unsigned seed) {
  return test::random_x8_case(DType::Q4_0, rows, cols, seed, [](uint8_t* w) {
    auto* b = reinterpret_cast<BlockQ4_0*>(w);
    std::memset(b[0].qs, 0x00, 16);  // all −8
    std::memset(b[1].qs, 0xFF, 16);  // all +7
  });
}

std::vector<int32_t> block_sums(const Case& c) {
  const auto* a = reinterpret_cast<const BlockQ8_0*>(c.a.data());
  std::vector<int32_t> s(size_t(c.cols / 32), 0);
  for (int64_t b = 0; b < c.cols / 32; b++)
    for (int8_t q : a[b].qs) s[size_t(b)] += q;
  return s;
}

Tensor q4_0_tensor(const Case& c) { return test::borrowed_matrix(DType::Q4_0, c.rows, c.cols, c.w); }

// The repack is a permutation of bytes: unpacking restores the file exactly,
// and to_f32 reads the same values from either layout.
TEST(Q4_0x8, RepackRoundTripsExactly) {
  for (int64_t cols : {32, 96, 2080}) {
    const Case c = make_case(24, cols, unsigned(cols));
    const Tensor plain = q4_0_tensor(c);
    const Tensor x8 = repack_q4_0x8(plain);
    EXPECT_EQ(x8.dtype, DType::Q4_0_X8);
    EXPECT_EQ(x8.nbytes, plain.nbytes);
    test::expect_lossless_repack(plain, x8, unpack_q4_0x8(x8));
  }
  Case odd = make_case(12, 64, 1);
  EXPECT_ANY_THROW(repack_q4_0x8(q4_0_tensor(odd)));  // rows not a multiple of 8
}

// Each of the 8 outputs equals the plain Q4_0 · Q8_0 dot of its row (scalar
// reference kernel), for the reference gemv and the dispatched (AVX2) one.
TEST(Q4_0x8, GemvMatchesRowDots) {
  for (int64_t cols : {32, 288, 2080}) {
    SCOPED_TRACE("cols=" + std::to_string(cols));
    const Case c = make_case(16, cols, unsigned(cols) + 5);
    const Tensor x8 = repack_q4_0x8(q4_0_tensor(c));
    const auto sums = block_sums(c);
    const auto* a = reinterpret_cast<const BlockQ8_0*>(c.a.data());
    const auto* groups = reinterpret_cast<const BlockQ4_0x8*>(x8.data);
    const uint64_t rb = row_bytes(DType::Q4_0, uint64_t(cols));
    for (int64_t g = 0; g < 2; g++) {
      float ref[8], best[8];
      gemv_q4_0x8_ref(cols, groups + g * (cols / 32), a, sums.data(), ref);
      gemv_q4_0x8(cols, groups + g * (cols / 32), a, sums.data(), best);
      for (int r = 0; r < 8; r++) {
        const float want = qdot_reference(DType::Q4_0).fn(cols, c.w.data() + size_t(8 * g + r) * rb, a);
        EXPECT_NEAR(ref[r], want, 1e-4f * (std::fabs(want) + 1)) << "row " << 8 * g + r;
        EXPECT_NEAR(best[r], want, 1e-4f * (std::fabs(want) + 1)) << "row " << 8 * g + r;
      }
    }
  }
}

// The 4-token kernel gives each token what the one-token reference gives it,
// with SIMD on and forced off.
TEST(Q4_0x8, Gemm4MatchesGemvPerToken) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const Case c = make_case(8, cols, unsigned(cols) + 9);
    const Tensor x8 = repack_q4_0x8(q4_0_tensor(c));
    const int64_t nb = cols / 32;
    std::vector<BlockQ8_0> acts;
    std::vector<int32_t> sums;
    for (unsigned t = 0; t < 4; t++) {
      const Case ct = make_case(8, cols, unsigned(cols) * 7 + t);  // a different activation row per token
      const auto* a = reinterpret_cast<const BlockQ8_0*>(ct.a.data());
      acts.insert(acts.end(), a, a + nb);
      const auto s = block_sums(ct);
      sums.insert(sums.end(), s.begin(), s.end());
    }
    const auto* group = reinterpret_cast<const BlockQ4_0x8*>(x8.data);
    test::expect_gemm4_matches_gemv(
        [&](float* out, int64_t stride) { gemm4_q4_0x8(cols, group, acts.data(), sums.data(), nb, out, stride); },
        [&](int t, float* want) { gemv_q4_0x8_ref(cols, group, acts.data() + t * nb, sums.data() + t * nb, want); });
  });
}

// Q4_1_X8: random rows with a block of all 0 and one of all 15 (nonzero minimums).
Case q4_1_case(int64_t rows, int64_t cols, unsigned seed) {
  return test::random_x8_case(DType::Q4_1, rows, cols, seed, [cols](uint8_t* w) {
    auto* b = reinterpret_cast<BlockQ4_1*>(w);
    std::memset(b[0].qs, 0x00, 16);
    if (cols >= 64) std::memset(b[1].qs, 0xFF, 16);
  });
}

Tensor q4_1_tensor(const Case& c) { return test::borrowed_matrix(DType::Q4_1, c.rows, c.cols, c.w); }

TEST(Q4_1x8, RepackRoundTripsExactly) {
  for (int64_t cols : {32, 96, 2080}) {
    const Case c = q4_1_case(24, cols, unsigned(cols));
    const Tensor plain = q4_1_tensor(c);
    const Tensor x8 = repack_q4_1x8(plain);
    EXPECT_EQ(x8.dtype, DType::Q4_1_X8);
    EXPECT_EQ(x8.nbytes, plain.nbytes);
    test::expect_lossless_repack(plain, x8, unpack_q4_1x8(x8));
  }
  EXPECT_ANY_THROW(repack_q4_1x8(q4_1_tensor(q4_1_case(12, 64, 1))));
}

// Each output equals the plain Q4_1 · Q8_0 dot of its row (d·da·Σ q·a + m·da·Σ a), reference and dispatched.
TEST(Q4_1x8, GemvMatchesRowDots) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const Case c = q4_1_case(16, cols, unsigned(cols) + 5);
    const Tensor x8 = repack_q4_1x8(q4_1_tensor(c));
    const auto sums = block_sums(c);
    const auto with_sums = [&](auto gemv) {
      return [&, gemv](int64_t n, const BlockQ4_1x8* g, const BlockQ8_0* a, float* out) {
        gemv(n, g, a, sums.data(), out);
      };
    };
    test::expect_group_dots(DType::Q4_1, cols, c.w.data(), reinterpret_cast<const BlockQ4_1x8*>(x8.data), 2,
                            reinterpret_cast<const BlockQ8_0*>(c.a.data()), with_sums(gemv_q4_1x8_ref),
                            with_sums(gemv_q4_1x8));
  });
}

TEST(Q4_1x8, Gemm4MatchesGemvPerToken) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const Case c = q4_1_case(8, cols, unsigned(cols) + 9);
    const Tensor x8 = repack_q4_1x8(q4_1_tensor(c));
    const int64_t nb = cols / 32;
    const std::vector<BlockQ8_0> acts = test::four_token_acts(DType::Q4_1, cols, unsigned(cols) * 7);
    std::vector<int32_t> sums;
    for (int64_t i = 0; i < 4 * nb; i++) {
      int32_t s = 0;
      for (int8_t q : acts[size_t(i)].qs) s += q;
      sums.push_back(s);
    }
    const auto* group = reinterpret_cast<const BlockQ4_1x8*>(x8.data);
    test::expect_gemm4_matches_gemv(
        [&](float* out, int64_t stride) { gemm4_q4_1x8(cols, group, acts.data(), sums.data(), nb, out, stride); },
        [&](int t, float* want) { gemv_q4_1x8_ref(cols, group, acts.data() + t * nb, sums.data() + t * nb, want); });
  });
}

}  // namespace
}  // namespace lmpress
