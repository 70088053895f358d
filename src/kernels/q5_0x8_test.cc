#include "kernels/q5_0x8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "gemv_check.h"
#include "kernels/qdot.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lmpress {
namespace {

// Random Q5_0 rows (one block all −16, one all +15: every fifth bit 0, then
// 1) and Q8_0 activations with a block saturated at ±127.
struct Case {
  int64_t rows, cols;
  std::vector<uint8_t> w;  // plain Q5_0 rows
  std::vector<uint8_t> a;  // Q8_0 activations
};

Case make_case(int64_t rows, int64_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  const uint64_t rb = row_bytes(DType::Q5_0, uint64_t(cols));
  Case c{rows, cols, std::vector<uint8_t>(size_t(rows) * rb), std::vector<uint8_t>(row_bytes(DType::Q8_0, uint64_t(cols)))};
  std::vector<float> v(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; r++) {
    for (auto& x : v) x = nd(rng);
    quantize_row(DType::Q5_0, v.data(), cols, c.w.data() + size_t(r) * rb);
  }
  auto* b = reinterpret_cast<BlockQ5_0*>(c.w.data());
  std::memset(b[0].qs, 0x00, 16), std::memset(b[0].qh, 0x00, 4);  // all −16
  if (cols >= 64) std::memset(b[1].qs, 0xFF, 16), std::memset(b[1].qh, 0xFF, 4);  // all +15
  for (auto& x : v) x = nd(rng) * 3;
  v[0] = 40;
  quantize_row(DType::Q8_0, v.data(), cols, c.a.data());
  return c;
}

std::vector<int32_t> block_sums(const uint8_t* act, int64_t cols) {
  const auto* a = reinterpret_cast<const BlockQ8_0*>(act);
  std::vector<int32_t> s(size_t(cols / 32), 0);
  for (int64_t b = 0; b < cols / 32; b++)
    for (int8_t q : a[b].qs) s[size_t(b)] += q;
  return s;
}

Tensor q5_0_tensor(const Case& c) { return test::borrowed_matrix(DType::Q5_0, c.rows, c.cols, c.w); }

// The repack moves bits only: unpacking restores the file's bytes, and to_f32
// reads the same values from either layout.
TEST(Q5_0x8, RepackRoundTripsExactly) {
  for (int64_t cols : {32, 96, 2080}) {
    const Case c = make_case(24, cols, unsigned(cols));
    const Tensor plain = q5_0_tensor(c);
    const Tensor x8 = repack_q5_0x8(plain);
    EXPECT_EQ(x8.dtype, DType::Q5_0_X8);
    EXPECT_EQ(x8.nbytes, plain.nbytes);
    test::expect_lossless_repack(plain, x8, unpack_q5_0x8(x8));
  }
  EXPECT_ANY_THROW(repack_q5_0x8(q5_0_tensor(make_case(12, 64, 1))));  // rows not a multiple of 8
}

// Each of the 8 outputs equals the plain Q5_0 · Q8_0 dot of its row (the
// scalar reference kernel), for the reference gemv and the dispatched one,
// on every target.
TEST(Q5_0x8, GemvMatchesRowDots) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const Case c = make_case(16, cols, unsigned(cols) + 5);
    const Tensor x8 = repack_q5_0x8(q5_0_tensor(c));
    const auto sums = block_sums(c.a.data(), cols);
    const auto with_sums = [&](auto gemv) {
      return [&, gemv](int64_t n, const BlockQ5_0x8* g, const BlockQ8_0* a, float* out) {
        gemv(n, g, a, sums.data(), out);
      };
    };
    test::expect_group_dots(DType::Q5_0, cols, c.w.data(), reinterpret_cast<const BlockQ5_0x8*>(x8.data), 2,
                            reinterpret_cast<const BlockQ8_0*>(c.a.data()), with_sums(gemv_q5_0x8_ref),
                            with_sums(gemv_q5_0x8));
  });
}

// The 4-token kernel gives each token what the one-token reference gives it.
TEST(Q5_0x8, Gemm4MatchesGemvPerToken) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const Case c = make_case(8, cols, unsigned(cols) + 9);
    const Tensor x8 = repack_q5_0x8(q5_0_tensor(c));
    const int64_t nb = cols / 32;
    std::vector<BlockQ8_0> acts;
    std::vector<int32_t> sums;
    for (unsigned t = 0; t < 4; t++) {
      const Case ct = make_case(8, cols, unsigned(cols) * 7 + t);  // a different activation row per token
      const auto* a = reinterpret_cast<const BlockQ8_0*>(ct.a.data());
      acts.insert(acts.end(), a, a + nb);
      const auto s = block_sums(ct.a.data(), cols);
      sums.insert(sums.end(), s.begin(), s.end());
    }
    const auto* group = reinterpret_cast<const BlockQ5_0x8*>(x8.data);
    test::expect_gemm4_matches_gemv(
        [&](float* out, int64_t stride) { gemm4_q5_0x8(cols, group, acts.data(), sums.data(), nb, out, stride); },
        [&](int t, float* want) { gemv_q5_0x8_ref(cols, group, acts.data() + t * nb, sums.data() + t * nb, want); });
  });
}

// Q5_1_X8: random rows with a block of all 0 and one of all 31 (every fifth bit 0, then 1; nonzero minimums).
Case q5_1_case(int64_t rows, int64_t cols, unsigned seed) {
  const test::X8Case c = test::random_x8_case(DType::Q5_1, rows, cols, seed, [cols](uint8_t* w) {
    auto* b = reinterpret_cast<BlockQ5_1*>(w);
    std::memset(b[0].qs, 0x00, 16), std::memset(b[0].qh, 0x00, 4);
    if (cols >= 64) std::memset(b[1].qs, 0xFF, 16), std::memset(b[1].qh, 0xFF, 4);
  });
  return {c.rows, c.cols, c.w, c.a};
}

Tensor q5_1_tensor(const Case& c) { return test::borrowed_matrix(DType::Q5_1, c.rows, c.cols, c.w); }

TEST(Q5_1x8, RepackRoundTripsExactly) {
  for (int64_t cols : {32, 96, 2080}) {
    const Case c = q5_1_case(24, cols, unsigned(cols));
    const Tensor plain = q5_1_tensor(c);
    const Tensor x8 = repack_q5_1x8(plain);
    EXPECT_EQ(x8.dtype, DType::Q5_1_X8);
    EXPECT_EQ(x8.nbytes, plain.nbytes);
    test::expect_lossless_repack(plain, x8, unpack_q5_1x8(x8));
  }
  EXPECT_ANY_THROW(repack_q5_1x8(q5_1_tensor(q5_1_case(12, 64, 1))));
}

// Each output equals the plain Q5_1 · Q8_0 dot of its row (d·da·Σ q·a + m·da·Σ a), reference and dispatched.
TEST(Q5_1x8, GemvMatchesRowDots) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const Case c = q5_1_case(16, cols, unsigned(cols) + 5);
    const Tensor x8 = repack_q5_1x8(q5_1_tensor(c));
    const auto sums = block_sums(c.a.data(), cols);
    const auto with_sums = [&](auto gemv) {
      return [&, gemv](int64_t n, const BlockQ5_1x8* g, const BlockQ8_0* a, float* out) {
        gemv(n, g, a, sums.data(), out);
      };
    };
    test::expect_group_dots(DType::Q5_1, cols, c.w.data(), reinterpret_cast<const BlockQ5_1x8*>(x8.data), 2,
                            reinterpret_cast<const BlockQ8_0*>(c.a.data()), with_sums(gemv_q5_1x8_ref),
                            with_sums(gemv_q5_1x8));
  });
}

TEST(Q5_1x8, Gemm4MatchesGemvPerToken) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const Case c = q5_1_case(8, cols, unsigned(cols) + 9);
    const Tensor x8 = repack_q5_1x8(q5_1_tensor(c));
    const int64_t nb = cols / 32;
    const std::vector<BlockQ8_0> acts = test::four_token_acts(DType::Q5_1, cols, unsigned(cols) * 7);
    std::vector<int32_t> sums;
    for (int t = 0; t < 4; t++) {
      const auto s = block_sums(reinterpret_cast<const uint8_t*>(acts.data() + t * nb), cols);
      sums.insert(sums.end(), s.begin(), s.end());
    }
    const auto* group = reinterpret_cast<const BlockQ5_1x8*>(x8.data);
    test::expect_gemm4_matches_gemv(
        [&](float* out, int64_t stride) { gemm4_q5_1x8(cols, group, acts.data(), sums.data(), nb, out, stride); },
        [&](int t, float* want) { gemv_q5_1x8_ref(cols, group, acts.data() + t * nb, sums.data() + t * nb, want); });
  });
}

}  // namespace
}  // namespace lmpress
