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

// The two layouts of nibble-indexed levels in Q4_0_x8's groups: IQ4_NL_X8 and MXFP4_X8.
struct Layout {
  DType file, x8;
  Tensor (*repack)(const Tensor&);
  std::vector<uint8_t> (*unpack)(const Tensor&);
  X8Kernels (*kernels)();
  void (*ref)(int64_t, const BlockQ4_0x8*, const BlockQ8_0*, float*);
};
const Layout kLayouts[] = {
    {DType::IQ4_NL, DType::IQ4_NL_X8, repack_iq4_nlx8, unpack_iq4_nlx8, iq4_nlx8_kernels, gemv_iq4_nlx8_ref},
    {DType::MXFP4, DType::MXFP4_X8, repack_mxfp4x8, unpack_mxfp4x8, mxfp4x8_kernels, gemv_mxfp4x8_ref},
};

// Random rows (one block of the lowest level, one of the highest) and Q8_0 activations.
test::X8Case make_case(const Layout& l, int64_t rows, int64_t cols, unsigned seed) {
  return test::random_x8_case(l.file, rows, cols, seed, [&](uint8_t* w) {
    const size_t bytes = dtype_info(l.file).block_bytes, qs = l.file == DType::MXFP4 ? 1 : 2;
    std::memset(w + qs, l.file == DType::MXFP4 ? 0xFF : 0x00, 16);          // IQ4_NL −127, MXFP4 −12
    std::memset(w + bytes + qs, l.file == DType::MXFP4 ? 0x77 : 0xFF, 16);  // IQ4_NL 113, MXFP4 12
  });
}

Tensor file_tensor(const Layout& l, const test::X8Case& c) { return test::borrowed_matrix(l.file, c.rows, c.cols, c.w); }

// The repack is Q4_0_x8's permutation of bytes: unpacking restores the file
// exactly, and to_f32 reads the same values from either layout.
// MXFP4's exponent byte becomes an exact f16 power of two (17-byte blocks in, 18 out); a matrix with a scale f16
// cannot hold stays MXFP4.
TEST(IQ4_NLx8, RepackRoundTripsExactly) {
  for (const Layout& l : kLayouts) {
    SCOPED_TRACE(dtype_name(l.file));
    for (int64_t cols : {32, 96, 2080}) {
      const test::X8Case c = make_case(l, 24, cols, unsigned(cols));
      const Tensor plain = file_tensor(l, c);
      const Tensor x8 = l.repack(plain);
      EXPECT_EQ(x8.dtype, l.x8);
      EXPECT_EQ(x8.nbytes, uint64_t(24 * cols / 32 * 18));
      test::expect_lossless_repack(plain, x8, l.unpack(x8));
    }
    if (l.file == DType::IQ4_NL) EXPECT_ANY_THROW(l.repack(file_tensor(l, make_case(l, 12, 64, 1))));  // rows % 8
  }
  test::X8Case c = make_case(kLayouts[1], 8, 64, 4);
  c.w[17] = 150;  // block 1's scale 2^22
  EXPECT_EQ(repack_mxfp4x8(file_tensor(kLayouts[1], c)).dtype, DType::MXFP4);
}

// Each output equals the plain IQ4_NL · Q8_0 dot of its row (the scalar row
// kernel), for the reference and for the kernels of every target this CPU has.
TEST(IQ4_NLx8, GemvMatchesRowDots) {
  for (const Layout& l : kLayouts) {
    SCOPED_TRACE(dtype_name(l.file));
    test::for_kernel_targets({32, 288, 2080}, [&](int64_t cols) {
      const test::X8Case c = make_case(l, 16, cols, unsigned(cols) + 5);
      const Tensor x8 = l.repack(file_tensor(l, c));
      const X8Kernels k = l.kernels();
      using Gemv = std::function<void(int64_t, const BlockQ4_0x8*, const BlockQ8_0*, float*)>;
      test::expect_group_dots(l.file, cols, c.w.data(), reinterpret_cast<const BlockQ4_0x8*>(x8.data), 2,
                              reinterpret_cast<const BlockQ8_0*>(c.a.data()), Gemv(l.ref),
                              Gemv([&](int64_t n, const BlockQ4_0x8* g, const BlockQ8_0* a, float* out) {
                                k.gemv(n, g, a, nullptr, out);
                              }));
    });
  }
}

// The 4-token and 1..3-token kernels give each token exactly what the one-token
// kernel gives it (a prompt row and a decoded row of the same token agree).
TEST(IQ4_NLx8, MultiTokenKernelsMatchGemvPerToken) {
  for (const Layout& l : kLayouts)
  test::for_kernel_targets({32, 288, 2080}, [&](int64_t cols) {
    SCOPED_TRACE(dtype_name(l.file));
    const test::X8Case c = make_case(l, 8, cols, unsigned(cols) + 9);
    const Tensor x8 = l.repack(file_tensor(l, c));
    const int64_t nb = cols / 32;
    const std::vector<BlockQ8_0> acts = test::four_token_acts(l.file, cols, unsigned(cols) * 7);
    const auto* group = reinterpret_cast<const BlockQ4_0x8*>(x8.data);
    const X8Kernels k = l.kernels();
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

// Through matmul: prompt batches of the repacked IQ4_NL matrix take the int8
// panels as the file layout's do (the same chunks: equal outputs bit for bit),
// MXFP4_X8's its multi-token kernels (within Q8_0 rounding of the file layout's
// f32 GEMM); a decoded token's rows are the row dots' within rounding.
TEST(IQ4_NLx8, MatmulPromptsOnThePanelsAndDecodedRows) {
  for (const Layout& l : kLayouts)
  test::for_kernel_targets({2080}, [&](int64_t cols) {
    SCOPED_TRACE(dtype_name(l.file));
    const test::X8Case c = make_case(l, 16, cols, 3);
    const Tensor plain = file_tensor(l, c), x8 = l.repack(plain);
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    const int64_t n = 9;
    std::vector<float> x(size_t(n * cols)), y_plain(size_t(n * 16)), y_x8(y_plain.size());
    for (auto& v : x) v = nd(rng);
    matmul(plain, x.data(), n, y_plain.data());
    matmul(x8, x.data(), n, y_x8.data());
    if (l.file == DType::IQ4_NL && qdot_simd_active() && cpu_isa().avx2) {
      EXPECT_EQ(y_x8, y_plain);
    } else {  // no panels: the x8 kernels (Q8_0 activations) against the file layout's f32 GEMM
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
