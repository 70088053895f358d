#include "kernels/int_panels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "core/cpu_isa.h"
#include "core/fp16.h"
#include "kernels/int_blocks.h"
#include "kernels/matmul.h"
#include "kernels/qdot.h"
#include "kernels/to_f32.h"
#if defined(__x86_64__)
#include "kernels/x8_vnni.h"
#endif
#include "test_util.h"

namespace lmpress {
namespace {

// 16 rows of 512 of ggml's blocks of t (tests/data/ggml_blocks.gguf, 4 rows repeated) as a weight tensor.
Tensor ggml_weight(DType t) {
  const test::GgmlBlocks find;
  const std::string name = dtype_name(t);
  const Tensor& q = find(find.has("q." + name) ? "q." + name : "qw." + name);
  auto bytes = std::make_shared<std::vector<uint8_t>>(4 * q.nbytes);
  for (size_t i = 0; i < bytes->size(); i++) (*bytes)[i] = q.data[i % q.nbytes];
  Tensor w;
  w.name = "w." + name;
  w.dtype = t;
  w.shape = {16, 512};
  w.data = bytes->data();
  w.nbytes = bytes->size();
  w.owner = bytes;
  return w;
}

// The decoded chunks hold the weights' values exactly (the weights' integers
// under the scale of each 16-value half); the AVX2 decoders give the scalar
// decoder's bytes.
TEST(IntPanels, DecodedRowsHoldTheWeights) {
  for (DType t : {DType::IQ4_XS, DType::IQ3_XXS, DType::IQ3_S, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ1_S,
                  DType::IQ1_M, DType::TQ1_0, DType::TQ2_0, DType::Q6_K, DType::Q3_K, DType::IQ4_NL}) {
    SCOPED_TRACE(dtype_name(t));
    const Tensor w = ggml_weight(t);
    std::vector<ChunkQ8> got(8 * 512 / 32), scalar(got.size());
    for (int64_t g = 0; g < 2; g++) {
      qdot_use_simd(false);
      decode_int_panel_rows(w, g, scalar.data());
      qdot_use_simd(true);
      decode_int_panel_rows(w, g, got.data());
      EXPECT_EQ(0, std::memcmp(got.data(), scalar.data(), got.size() * sizeof(ChunkQ8)));
      std::vector<float> want(8 * 512);
      to_f32(w, g * 8 * 512, 8 * 512, want.data());
      for (size_t b = 0; b < got.size(); b++)
        for (int i = 0; i < 32; i++) ASSERT_EQ(got[b].d[i / 16] * float(got[b].qs[i]), want[32 * b + i]) << b << " " << i;
    }
  }
}

// The VNNI panel kernels (each encoding this CPU has, and the emulated one;
// one sum per block for a format with a scale per 32 values, one per half for
// one with a scale per 16) against the scalar reference, 1 to 4 tokens; the
// reference against the chunks' values times the activations.
TEST(IntPanels, PanelKernelsMatchReference) {
  for (DType type : {DType::IQ4_XS, DType::IQ2_XS}) {
    SCOPED_TRACE(dtype_name(type));
    const bool halves = int_block_format(type)->group < 32;
    const Tensor w = ggml_weight(type);
    std::vector<ChunkQ8> rows(8 * 512 / 32);
    decode_int_panel_rows(w, 0, rows.data());
    std::vector<BlockPanelx8> panel(512 / 32);
    pack_panel_x8(rows.data(), 512, panel.data());
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    std::vector<float> x(4 * 512);
    for (auto& v : x) v = nd(rng);
    const size_t ab = activation_bytes(ActFormat::Q8_0, 512);
    std::vector<uint8_t> a(4 * ab), au(4 * ab);
    for (int t = 0; t < 4; t++) quantize_activations(ActFormat::Q8_0, x.data() + t * 512, 512, a.data() + t * ab);
    au = a;
    for (size_t i = 0; i < au.size(); i += sizeof(BlockQ8_0))
      for (int j = 0; j < 32; j++) au[i + 2 + size_t(j)] ^= 0x80;
    float ref[4][8];
    for (int t = 0; t < 4; t++) {
      gemv_panel_x8_ref(512, panel.data(), reinterpret_cast<const BlockQ8_0*>(au.data() + t * ab), ref[t]);
      const auto* q = reinterpret_cast<const BlockQ8_0*>(a.data() + t * ab);
      for (int r = 0; r < 8; r++) {
        double want = 0;
        for (int b = 0; b < 16; b++)
          for (int i = 0; i < 32; i++)
            want += double(rows[size_t(r * 16 + b)].d[i / 16]) * rows[size_t(r * 16 + b)].qs[i] * f16_to_f32(q[b].d) *
                    q[b].qs[i];
        EXPECT_NEAR(ref[t][r], want, 1e-5 * std::fabs(want) + 1e-6);
      }
    }
#if defined(__x86_64__)
    using Gemm4 = decltype(&simd_avxvnni::gemm4_panel_x8);
    using GemmN = decltype(&simd_avxvnni::gemmn_panel_x8);
    struct Encoding {
      Vnni v;
      Gemm4 gemm4, gemm4_16;
      GemmN gemmn, gemmn_16;
    };
    const Encoding encodings[] = {
        {Vnni::avx, &simd_avxvnni::gemm4_panel_x8, &simd_avxvnni::gemm4_panel16_x8, &simd_avxvnni::gemmn_panel_x8,
         &simd_avxvnni::gemmn_panel16_x8},
        {Vnni::avx512, &simd_avx512vnni::gemm4_panel_x8, &simd_avx512vnni::gemm4_panel16_x8,
         &simd_avx512vnni::gemmn_panel_x8, &simd_avx512vnni::gemmn_panel16_x8},
        {Vnni::emulated, &simd_vnni_emulated::gemm4_panel_x8, &simd_vnni_emulated::gemm4_panel16_x8,
         &simd_vnni_emulated::gemmn_panel_x8, &simd_vnni_emulated::gemmn_panel16_x8},
        // AVX2's maddubs kernels (Vnni::none), for values of magnitude ≤ 64 only.
        {Vnni::none, &simd_avx2_small::gemm4_panel_x8, &simd_avx2_small::gemm4_panel16_x8,
         &simd_avx2_small::gemmn_panel_x8, &simd_avx2_small::gemmn_panel16_x8}};
    for (const auto& e : encodings) {
      if (!qdot_vnni_available(e.v) || !cpu_isa().avx2) continue;
      if (e.v == Vnni::none && int_block_format(type)->max_abs > 64) continue;
      SCOPED_TRACE(int(e.v));
      const auto* act = reinterpret_cast<const BlockQ8_0*>(au.data());
      float out[4][8];
      (halves ? e.gemm4_16 : e.gemm4)(512, panel.data(), act, 16, out[0], 8);
      for (int t = 0; t < 4; t++)
        for (int r = 0; r < 8; r++) EXPECT_NEAR(out[t][r], ref[t][r], 1e-5 * std::fabs(ref[t][r]) + 1e-6);
      for (int n = 1; n <= 3; n++) {
        (halves ? e.gemmn_16 : e.gemmn)(n, 512, panel.data(), act, 16, out[0], 8);
        for (int t = 0; t < n; t++)
          for (int r = 0; r < 8; r++) EXPECT_NEAR(out[t][r], ref[t][r], 1e-5 * std::fabs(ref[t][r]) + 1e-6);
      }
    }
    // The 512-bit two-panel kernel: each panel's rows as the 8-row kernel gives them, bit for bit.
    if (qdot_vnni_available(Vnni::avx512)) {
      std::vector<BlockPanelx8> pair(2 * 512 / 32);
      std::copy(panel.begin(), panel.end(), pair.begin());
      decode_int_panel_rows(w, 1, rows.data());
      for (int r = 0; r < 4; r++)  // rows 7..0: w's groups repeat the same 4 rows, a pair must tell them apart
        std::swap_ranges(rows.begin() + r * 16, rows.begin() + (r + 1) * 16, rows.begin() + (7 - r) * 16);
      pack_panel_x8(rows.data(), 512, pair.data() + 512 / 32);
      const auto* act = reinterpret_cast<const BlockQ8_0*>(au.data());
      float both[4][16], one[4][8];
      (halves ? simd_avx512vnni::gemm4x2_panel16_x8 : simd_avx512vnni::gemm4x2_panel_x8)(512, pair.data(), act, 16,
                                                                                          both[0], 16);
      for (int p = 0; p < 2; p++) {
        (halves ? simd_avx512vnni::gemm4_panel16_x8 : simd_avx512vnni::gemm4_panel_x8)(
            512, pair.data() + p * 512 / 32, act, 16, one[0], 8);
        for (int t = 0; t < 4; t++)
          for (int r = 0; r < 8; r++) EXPECT_EQ(both[t][8 * p + r], one[t][r]) << "panel " << p << " token " << t;
      }
    }
#endif
  }
}

#if defined(__x86_64__)
// AVX2's maddubs panel kernels at the edge of their bound: weights ±64 against
// activations whose unsigned bytes are 255 and 1 (values ±127), where a pair of
// products is ±32640; each must still equal the scalar reference exactly.
TEST(IntPanels, SmallValueKernelsDoNotSaturateAtTheirBound) {
  if (!cpu_isa().avx2) GTEST_SKIP() << "no AVX2";
  std::vector<ChunkQ8> rows(8 * 512 / 32);
  for (size_t c = 0; c < rows.size(); c++) {
    rows[c].d[0] = rows[c].d[1] = 0.5f;
    for (int i = 0; i < 32; i++) rows[c].qs[i] = int8_t((c + size_t(i) / 2) % 3 == 0 ? -64 : 64);
  }
  std::vector<BlockPanelx8> panel(512 / 32);
  pack_panel_x8(rows.data(), 512, panel.data());
  std::vector<BlockQ8_0> act(4 * 512 / 32);
  for (size_t b = 0; b < act.size(); b++) {
    act[b].d = f32_to_f16(0.25f);
    for (int i = 0; i < 32; i++) act[b].qs[i] = int8_t(uint8_t((b + size_t(i) / 4) % 2 ? 255 : 1));
  }
  float ref[4][8], out[4][8];
  for (int t = 0; t < 4; t++) gemv_panel_x8_ref(512, panel.data(), act.data() + t * 16, ref[t]);
  for (auto gemm4 : {&simd_avx2_small::gemm4_panel_x8, &simd_avx2_small::gemm4_panel16_x8}) {
    gemm4(512, panel.data(), act.data(), 16, out[0], 8);
    for (int t = 0; t < 4; t++)
      for (int r = 0; r < 8; r++) EXPECT_EQ(out[t][r], ref[t][r]) << "token " << t << " row " << r;
  }
  for (int n = 1; n <= 3; n++)
    for (auto gemmn : {&simd_avx2_small::gemmn_panel_x8, &simd_avx2_small::gemmn_panel16_x8}) {
      gemmn(n, 512, panel.data(), act.data(), 16, out[0], 8);
      for (int t = 0; t < n; t++)
        for (int r = 0; r < 8; r++) EXPECT_EQ(out[t][r], ref[t][r]) << n << " tokens: token " << t << " row " << r;
    }
}
#endif

// Prompt batches through the panels agree with the dequantized weights times the
// Q8_0-rounded activations up to the panels' own rounding (as bounded above), for
// 4-token tiles and the 1-3 tokens left.
TEST(IntPanels, PromptBatchesMatchFloatProducts) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (DType t : {DType::IQ4_XS, DType::IQ3_S, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ1_M, DType::TQ2_0, DType::Q6_K, DType::Q3_K,
                  DType::IQ4_NL}) {
    SCOPED_TRACE(dtype_name(t));
    const Tensor w = ggml_weight(t);
    const bool halves = int_block_format(t)->group < 32;
    std::vector<float> wf(16 * 512), amax(16 * 512 / 32, 0.0f);
    to_f32(w, 0, 16 * 512, wf.data());
    for (size_t i = 0; i < wf.size(); i++) amax[i / 32] = std::max(amax[i / 32], std::fabs(wf[i]));
    for (int64_t n : {4, 7, 18}) {
      std::vector<float> x(static_cast<size_t>(n * 512)), xq(x.size()), y(static_cast<size_t>(n * 16), -1.0f);
      for (auto& v : x) v = nd(rng);
      std::vector<uint8_t> q8(activation_bytes(ActFormat::Q8_0, 512));
      for (int64_t tk = 0; tk < n; tk++) {
        quantize_activations(ActFormat::Q8_0, x.data() + tk * 512, 512, q8.data());
        dequantize_row(DType::Q8_0, q8.data(), 512, xq.data() + tk * 512);
      }
      test::for_kernel_targets({512}, [&](int64_t) {
      std::fill(y.begin(), y.end(), -1.0f);
      if (!matmul_int_panels(w, x.data(), n, y.data())) {
        // The path exists wherever AVX2 does (Q6_K and Q3_K: exact panels, VNNI or AVX2's small-value kernels).
        EXPECT_FALSE(qdot_simd_active() && cpu_isa().avx2);
        return;
      }
      for (int64_t tk = 0; tk < n; tk++)
        for (int64_t r = 0; r < 16; r++) {
          double want = 0, bound = 1e-6;
          for (int64_t i = 0; i < 512; i++) {
            const size_t wi = size_t(r * 512 + i);
            const double xv = xq[size_t(tk * 512 + i)];
            want += double(wf[wi]) * xv;
            bound += (std::fabs(wf[wi]) / 1024 + std::ldexp(1.0, -25) * 127 + (halves ? amax[wi / 32] / 254 : 0.0)) *
                     std::fabs(xv);
          }
          EXPECT_NEAR(y[size_t(tk * 16 + r)], want, bound) << "token " << tk << " row " << r;
        }
      // matmul takes this path for prompt batches.
      std::vector<float> y2(y.size());
      matmul(w, x.data(), n, y2.data());
      EXPECT_EQ(y, y2);
      });
    }
  }
}

}  // namespace
}  // namespace lmpress
