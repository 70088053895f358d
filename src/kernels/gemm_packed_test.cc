#include "kernels/gemm_packed.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "gemv_check.h"
#include "kernels/gemm_microkernel.h"
#include "kernels/qdot.h"
#include "kernels/to_f32.h"
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
// reads them, within float rounding of Σ|w·x|, with token panels of `panel`.
void expect_matches_reference(DType t, int64_t n, int64_t out, int64_t in, int panel = 0) {
  SCOPED_TRACE(std::string(dtype_name(t)) + " n=" + std::to_string(n) + " out=" + std::to_string(out) +
               " in=" + std::to_string(in) + " panel=" + std::to_string(panel));
  std::mt19937 rng(uint32_t(n * 7919 + out * 31 + in));
  const auto bytes = random_weights(t, out, in, rng);
  const Tensor w = test::borrowed_matrix(t, out, in, bytes);
  const std::vector<float> wf = to_f32(w);
  std::vector<float> x(size_t(n * in));
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  // One extra row of y past the end: must stay untouched.
  std::vector<float> y(size_t((n + 1) * out), -7.0f);
  gemm_packed_with_panel(w, x.data(), n, y.data(), panel);
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

// fn once per Highway target this machine runs (AVX-512, AVX2, SSE4: the same
// source at 16, 8 and 4 lanes), then with the SIMD kernels off (the portable
// tiles and packing), and per token panel (6 and 12), dispatch pinned
// meanwhile.
template <class Fn>
void for_each_target_and_panel(Fn fn) {
  for (int64_t target : gemm_microkernel_targets()) {
    gemm_microkernel_pin_target(target);
    SCOPED_TRACE(gemm_packed_target());
    for (int panel : {kPanelSmall, kPanelLarge}) fn(panel);
  }
  gemm_microkernel_pin_target(0);
  qdot_use_simd(false);
  {
    SCOPED_TRACE(gemm_packed_target());
    for (int panel : {kPanelSmall, kPanelLarge}) fn(panel);
  }
  qdot_use_simd(true);
}

TEST(GemmPacked, EveryTargetCompiledForRunsHere) {
  // At least AVX2 and SSE4 on any x86 machine the tests run on (they need
  // AVX2), so the width-generic code is tested at 8 and 4 lanes even
  // where no AVX-512 CPU is at hand; NEON alone on aarch64 (SVE left out).
  if (!qdot_simd_active()) GTEST_SKIP() << "SIMD kernels capped off (LMPRESS_ISA=scalar): the portable ones run";
  std::vector<std::string> names;
  for (int64_t target : gemm_microkernel_targets()) {
    gemm_microkernel_pin_target(target);
    names.push_back(gemm_packed_target());
  }
  gemm_microkernel_pin_target(0);
#if defined(__aarch64__)
  EXPECT_EQ(names, std::vector<std::string>{"NEON"});
#else
  EXPECT_GE(names.size(), 2u);
  EXPECT_NE(std::find(names.begin(), names.end(), "AVX2"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "SSE4"), names.end());
#endif
  EXPECT_EQ(gemm_packed_target(), names.front()) << "dispatch runs the best target";
}

TEST(GemmPacked, PlainFloatTypesOnOddShapes) {
  // in: under one vector, not a multiple of 8, and past two 512-column slices
  // with a ragged tail; n and out: partial token panels and row tiles, one row.
  for_each_target_and_panel([](int panel) {
    for (DType t : {DType::F32, DType::F16, DType::BF16})
      for (int64_t in : {5, 72, 1100})
        for (int64_t n : {4, 6, 13})
          for (int64_t out : {1, 16, 35}) expect_matches_reference(t, n, out, in, panel);
  });
}

TEST(GemmPacked, AllTokenCountsOfBothPanels) {
  // n = 1..25: every partial last panel of 6 and of 12 tokens; 70 rows: full
  // tiles of 8, 16 and 32 rows and a ragged one.
  for_each_target_and_panel([](int panel) {
    for (int64_t n = 1; n <= 25; n++) expect_matches_reference(DType::F16, n, 70, 40, panel);
  });
}

TEST(GemmPacked, BlockTypesConvertWholeBlocks) {
  // 768 columns: one 512-column slice and a 256-column one with AVX2's 16
  // rows, three 256-column slices with AVX-512's 32.
  for_each_target_and_panel([](int panel) {
    for (DType t : {DType::Q4_1, DType::Q5_1, DType::Q6_K, DType::Q3_K, DType::IQ4_NL})
      expect_matches_reference(t, 7, 19, 768, panel);
    expect_matches_reference(DType::Q4_0, 300, 40, 256, panel);  // many token panels
  });
}

TEST(GemmPacked, OfferedWithoutSimdButNotForWholeRowLayouts) {
  EXPECT_FALSE(gemm_packed_supports(DType::F16_BITMAP));  // rows of varying size
  EXPECT_FALSE(gemm_packed_supports(DType::Q4_0_X8));     // rows interleaved
  const bool simd = qdot_simd_active();                   // false under LMPRESS_ISA=scalar
  qdot_use_simd(false);
  EXPECT_TRUE(gemm_packed_supports(DType::F16));
  EXPECT_STREQ(gemm_packed_target(), "portable");
  qdot_use_simd(true);
  if (simd) {
    EXPECT_STRNE(gemm_packed_target(), "portable");
  } else {
    EXPECT_STREQ(gemm_packed_target(), "portable");
  }
}

}  // namespace
}  // namespace lmpress
