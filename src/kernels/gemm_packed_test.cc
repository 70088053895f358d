#include "kernels/gemm_packed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "gemv_check.h"
#include "kernels/qdot.h"
#include "quant/quantize.h"

namespace lmpress {
namespace {

// A random [out, in] matrix of type t (values stored in t, so the reference
// sees exactly what the kernel sees).
std::vector<uint8_t> random_weights(DType t, int64_t out, int64_t in, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  const uint64_t rb = row_bytes(t, uint64_t(in));
  std::vector<uint8_t> bytes(size_t(out) * rb);
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t r = 0; r < out; r++) {
    for (auto& v : row) v = nd(rng);
    uint8_t* dst = bytes.data() + r * rb;
    if (t == DType::F32)
      std::memcpy(dst, row.data(), rb);
    else if (t == DType::F16 || t == DType::BF16)
      for (int64_t c = 0; c < in; c++)
        reinterpret_cast<uint16_t*>(dst)[c] = t == DType::F16 ? f32_to_f16(row[size_t(c)]) : f32_to_bf16(row[size_t(c)]);
    else
      EXPECT_TRUE(quantize_row(t, row.data(), in, dst));
  }
  return bytes;
}

// Every output against a double-precision sum over the weights as to_f32
// reads them, within float rounding of Σ|w·x|.
void expect_matches_reference(DType t, int64_t n, int64_t out, int64_t in) {
  SCOPED_TRACE(std::string(dtype_name(t)) + " n=" + std::to_string(n) + " out=" + std::to_string(out) +
               " in=" + std::to_string(in));
  std::mt19937 rng(uint32_t(n * 7919 + out * 31 + in));
  const auto bytes = random_weights(t, out, in, rng);
  const Tensor w = test::borrowed_matrix(t, out, in, bytes);
  const std::vector<float> wf = to_f32(w);
  std::vector<float> x(size_t(n * in));
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  // One extra row of y past the end: must stay untouched.
  std::vector<float> y(size_t((n + 1) * out), -7.0f);
  gemm_packed(w, x.data(), n, y.data());
  for (int64_t t_ = 0; t_ < n; t_++)
    for (int64_t r = 0; r < out; r++) {
      double want = 0, mag = 0;
      for (int64_t k = 0; k < in; k++) {
        const double p = double(wf[size_t(r * in + k)]) * x[size_t(t_ * in + k)];
        want += p, mag += std::fabs(p);
      }
      ASSERT_NEAR(y[size_t(t_ * out + r)], want, 1e-5 * mag + 1e-6) << "token " << t_ << " row " << r;
    }
  for (int64_t r = 0; r < out; r++) ASSERT_EQ(y[size_t(n * out + r)], -7.0f);
}

TEST(GemmPacked, PlainFloatTypesOnOddShapes) {
  if (!gemm_packed_supports(DType::F16)) GTEST_SKIP() << "no AVX2 here";
  // in: under one vector, not a multiple of 8, and past two 512-column slices
  // with a ragged tail; n and out: partial 6-token and 16-row tiles, one row.
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (int64_t in : {5, 72, 1100})
      for (int64_t n : {4, 6, 13})
        for (int64_t out : {1, 16, 35}) expect_matches_reference(t, n, out, in);
}

TEST(GemmPacked, BlockTypesConvertWholeBlocks) {
  if (!gemm_packed_supports(DType::Q4_1)) GTEST_SKIP() << "no AVX2 here";
  // 768 columns: one 512-column slice and a 256-column one.
  for (DType t : {DType::Q4_1, DType::Q5_1, DType::Q6_K, DType::Q3_K, DType::IQ4_NL})
    expect_matches_reference(t, 7, 19, 768);
  expect_matches_reference(DType::Q4_0, 300, 40, 256);  // many token panels
}

TEST(GemmPacked, NotOfferedWithoutSimdOrForWholeRowLayouts) {
  EXPECT_FALSE(gemm_packed_supports(DType::F16_BITMAP));  // rows of varying size
  EXPECT_FALSE(gemm_packed_supports(DType::Q4_0_X8));     // rows interleaved
  qdot_use_simd(false);
  EXPECT_FALSE(gemm_packed_supports(DType::F16));
  qdot_use_simd(true);
}

}  // namespace
}  // namespace lmpress
