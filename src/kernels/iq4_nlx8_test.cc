#include "kernels/iq4_nlx8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "core/cpu_isa.h"
#include "kernels/matmul.h"
#include "kernels/qdot.h"
#include "quant/quantize.h"
#include "gemv_check.h"
#include "test_util.h"

namespace lmpress {
namespace {

// Random IQ4_NL rows (one block of the lowest level, one of the highest) and Q8_0 activations.
test::X8Case make_case(int64_t rows, int64_t cols, unsigned seed) {
  return test::random_x8_case(DType::IQ4_NL, rows, cols, seed, [](uint8_t* w) {
    auto* b = reinterpret_cast<BlockIQ4_NL*>(w);
    std::memset(b[0].qs, 0x00, 16);  // all −127
    std::memset(b[1].qs, 0xFF, 16);  // all 113
  });
}

Tensor iq4_nl_tensor(const test::X8Case& c) { return test::borrowed_matrix(DType::IQ4_NL, c.rows, c.cols, c.w); }

// The repack is Q4_0_x8's permutation of bytes: unpacking restores the file
// exactly, and to_f32 reads the same values from either layout.
TEST(IQ4_NLx8, RepackRoundTripsExactly) {
  for (int64_t cols : {32, 96, 2080}) {
    const test::X8Case c = make_case(24, cols, unsigned(cols));
    const Tensor plain = iq4_nl_tensor(c);
    const Tensor x8 = repack_iq4_nlx8(plain);
    EXPECT_EQ(x8.dtype, DType::IQ4_NL_X8);
    EXPECT_EQ(x8.nbytes, plain.nbytes);
    test::expect_lossless_repack(plain, x8, unpack_iq4_nlx8(x8));
  }
  EXPECT_ANY_THROW(repack_iq4_nlx8(iq4_nl_tensor(make_case(12, 64, 1))));  // rows not a multiple of 8
}

// Each output equals the plain IQ4_NL · Q8_0 dot of its row (the scalar row
// kernel), for the reference and for the kernels of every target this CPU has.
TEST(IQ4_NLx8, GemvMatchesRowDots) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const test::X8Case c = make_case(16, cols, unsigned(cols) + 5);
    const Tensor x8 = repack_iq4_nlx8(iq4_nl_tensor(c));
    const X8Kernels k = iq4_nlx8_kernels();
    using Gemv = std::function<void(int64_t, const BlockQ4_0x8*, const BlockQ8_0*, float*)>;
    test::expect_group_dots(DType::IQ4_NL, cols, c.w.data(), reinterpret_cast<const BlockQ4_0x8*>(x8.data), 2,
                            reinterpret_cast<const BlockQ8_0*>(c.a.data()), Gemv(gemv_iq4_nlx8_ref),
                            Gemv([&](int64_t n, const BlockQ4_0x8* g, const BlockQ8_0* a, float* out) {
                              k.gemv(n, g, a, nullptr, out);
                            }));
  });
}

// The 4-token and 1..3-token kernels give each token exactly what the one-token
// kernel gives it (a prompt row and a decoded row of the same token agree).
TEST(IQ4_NLx8, MultiTokenKernelsMatchGemvPerToken) {
  test::for_kernel_targets({32, 288, 2080}, [](int64_t cols) {
    const test::X8Case c = make_case(8, cols, unsigned(cols) + 9);
    const Tensor x8 = repack_iq4_nlx8(iq4_nl_tensor(c));
    const int64_t nb = cols / 32;
    const std::vector<BlockQ8_0> acts = test::four_token_acts(DType::IQ4_NL, cols, unsigned(cols) * 7);
    const auto* group = reinterpret_cast<const BlockQ4_0x8*>(x8.data);
    const X8Kernels k = iq4_nlx8_kernels();
    test::expect_gemm4_matches_gemv([&](float* out, int64_t stride) { k.gemm4(cols, group, acts.data(), nullptr, nb, out, stride); },
                                    [&](int t, float* want) { k.gemv(cols, group, acts.data() + t * nb, nullptr, want); });
    std::vector<float> out4(32), want(8);
    k.gemm4(cols, group, acts.data(), nullptr, nb, out4.data(), 8);
    for (int64_t t = 0; t < 4; t++) {
      k.gemv(cols, group, acts.data() + t * nb, nullptr, want.data());
      for (int r = 0; r < 8; r++) EXPECT_EQ(out4[size_t(8 * t + r)], want[size_t(r)]) << "token " << t;
    }
    if (!k.gemmn) return;
    for (int64_t n = 1; n <= 3; n++) {
      std::vector<float> out(size_t(8 * n));
      k.gemmn(n, cols, group, acts.data(), nullptr, nb, out.data(), 8);
      for (int64_t t = 0; t < n; t++) {
        k.gemv(cols, group, acts.data() + t * nb, nullptr, want.data());
        for (int r = 0; r < 8; r++) EXPECT_EQ(out[size_t(8 * t + r)], want[size_t(r)]) << n << " tokens, token " << t;
      }
    }
  });
}

// Through matmul: prompt batches of the repacked matrix take the int8 panels
// as the file layout's do (the same chunks: equal outputs bit for bit), and a
// decoded token's rows are the row dots' within rounding.
TEST(IQ4_NLx8, MatmulPromptsOnThePanelsAndDecodedRows) {
  test::for_kernel_targets({2080}, [](int64_t cols) {
    const test::X8Case c = make_case(16, cols, 3);
    const Tensor plain = iq4_nl_tensor(c), x8 = repack_iq4_nlx8(plain);
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    const int64_t n = 9;
    std::vector<float> x(size_t(n * cols)), y_plain(size_t(n * 16)), y_x8(y_plain.size());
    for (auto& v : x) v = nd(rng);
    matmul(plain, x.data(), n, y_plain.data());
    matmul(x8, x.data(), n, y_x8.data());
    if (qdot_simd_active() && cpu_isa().avx2) {
      EXPECT_EQ(y_x8, y_plain);
    } else {  // no panels: the x8 reference kernels (Q8_0 activations) against the file layout's f32 GEMM
      for (size_t i = 0; i < y_plain.size(); i++) EXPECT_NEAR(y_x8[i], y_plain[i], 1.0f + 0.02f * std::fabs(y_plain[i]));
    }
    std::vector<float> one_plain(16), one_x8(16);
    matmul(plain, x.data(), 1, one_plain.data());
    matmul(x8, x.data(), 1, one_x8.data());
    for (int r = 0; r < 16; r++) EXPECT_NEAR(one_x8[size_t(r)], one_plain[size_t(r)], 1e-4f * (std::fabs(one_plain[size_t(r)]) + 1));
  });
}

}  // namespace
}  // namespace lmpress
