#include "kernels/q4_kx8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kernels/qdot.h"
#include "kernels/to_f32.h"
#include "quant/quantize.h"
#include "gemv_check.h"
#include "test_util.h"

namespace lmpress {
namespace {

// Random Q4_K rows (one block with every scale, min and nibble at its
// maximum, so the 6-bit packing and the int16 sums are pushed to their ends)
// and Q8_K activations for each of `tokens` tokens.
struct Case {
  int64_t rows, cols;
  std::vector<uint8_t> w;
  std::vector<BlockQ8_K> a;
};

Case make_case(int64_t rows, int64_t cols, int tokens, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  const uint64_t rb = row_bytes(DType::Q4_K, uint64_t(cols));
  Case c{rows, cols, std::vector<uint8_t>(size_t(rows) * rb), {}};
  std::vector<float> v(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; r++) {
    for (auto& x : v) x = nd(rng) + (r % 3 == 0 ? 0.7f : 0.0f);
    quantize_row(DType::Q4_K, v.data(), cols, c.w.data() + size_t(r) * rb);
  }
  auto* b = reinterpret_cast<BlockQ4_K*>(c.w.data() + rb);  // row 1, block 0
  std::memset(b->scales, 0xFF, sizeof(b->scales));
  std::memset(b->qs, 0xFF, sizeof(b->qs));
  c.a.resize(size_t(tokens * cols / QK_K));
  for (int t = 0; t < tokens; t++) {
    for (auto& x : v) x = nd(rng) * 3;
    v[0] = t % 2 ? -40.0f : 40.0f;
    quantize_activations(ActFormat::Q8_K, v.data(), cols, c.a.data() + t * cols / QK_K);
  }
  return c;
}

Tensor q4_k_tensor(const Case& c) { return test::borrowed_matrix(DType::Q4_K, c.rows, c.cols, c.w); }

TEST(Q4_Kx8, RepackRoundTripsExactly) {
  for (int64_t cols : {256, 768, 2816}) {
    const Case c = make_case(24, cols, 1, unsigned(cols));
    const Tensor plain = q4_k_tensor(c);
    const Tensor x8 = repack_q4_kx8(plain);
    EXPECT_EQ(x8.dtype, DType::Q4_K_X8);
    EXPECT_EQ(x8.nbytes, plain.nbytes / 144 * 148);
    test::expect_lossless_repack(plain, x8, unpack_q4_kx8(x8));
  }
  EXPECT_ANY_THROW(repack_q4_kx8(q4_k_tensor(make_case(12, 256, 1, 1))));  // rows not a multiple of 8
}

// Each of the 8 outputs equals the plain Q4_K · Q8_K dot of its row (the
// scalar reference kernel of qdot), for the reference gemv and the dispatched
// one, with SIMD on and forced off.
TEST(Q4_Kx8, GemvMatchesRowDots) {
  test::for_kernel_targets({256, 768, 2816}, [](int64_t cols) {
    const Case c = make_case(16, cols, 1, unsigned(cols) + 5);
    const Tensor x8 = repack_q4_kx8(q4_k_tensor(c));
    test::expect_group_dots(DType::Q4_K, cols, c.w.data(), reinterpret_cast<const BlockQ4_Kx8*>(x8.data), 2,
                            c.a.data(), gemv_q4_kx8_ref, gemv_q4_kx8);
  });
}

// The 4-token kernel gives each token what the one-token reference gives it.
TEST(Q4_Kx8, Gemm4MatchesGemvPerToken) {
  test::for_kernel_targets({256, 2816}, [](int64_t cols) {
    const Case c = make_case(8, cols, 4, unsigned(cols) + 9);
    const Tensor x8 = repack_q4_kx8(q4_k_tensor(c));
    const auto* group = reinterpret_cast<const BlockQ4_Kx8*>(x8.data);
    const int64_t nb = cols / QK_K;
    test::expect_gemm4_matches_gemv(
        [&](float* out, int64_t stride) { gemm4_q4_kx8(cols, group, c.a.data(), nb, out, stride); },
        [&](int t, float* want) { gemv_q4_kx8_ref(cols, group, c.a.data() + t * nb, want); });
  });
}

// Row r of the interleaved matrix reads back as the plain row's dequantization.
TEST(Q4_Kx8, RowsDequantizeAsPlainQ4_K) {
  const Case c = make_case(16, 512, 1, 77);
  const Tensor plain = q4_k_tensor(c);
  const Tensor x8 = repack_q4_kx8(plain);
  std::vector<float> a(512), b(512);
  for (int64_t r : {0, 1, 7, 9, 15}) {
    to_f32(plain, r * 512, 512, a.data());
    to_f32(x8, r * 512, 512, b.data());
    EXPECT_EQ(a, b) << "row " << r;
  }
}

}  // namespace
}  // namespace lmpress
