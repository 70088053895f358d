// Decoding through the int8 kernels (activations quantized to Q8_0, as
// llama.cpp does) against the f32-activation GEMM path on the same weights.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/qdot.h"
#include "model/forward.h"
#include "model/model.h"
#include "test_util.h"

namespace lmpress {
namespace {

TEST(DecodeKernels, StayCloseToTheF32ActivationPath) {
  const std::string d = test::temp_dir();
  const std::string src = test::shared_path("models/lmp-8m");
  // lmp-8m's 288-wide rows take no k-quant: those come from a one-block tinyllama-shaped model
  // (Q4_K_M: Q4_K and Q6_K tensors).
  ASSERT_EQ(test::run_cli("make-model --shape tinyllama-1.1b --layers 1 --vocab 512 --type q4_k_m " + d +
                          "/q4_k_m.gguf").status, 0);
  for (const char* type : {"q8_0", "q4_0", "q4_k_m"}) {
    SCOPED_TRACE(type);
    const std::string f = d + "/" + type + ".gguf";
    if (std::string(type) != "q4_k_m") {
      ASSERT_EQ(test::run_cli("quantize " + src + " " + f + " --type " + type + " --pure").status, 0);
    }
    auto m = load_model(f);
    const auto toks = m->tokenizer->encode(std::string("The history of the city begins with a small port"), true, false);
    const int64_t n = int64_t(toks.size()), V = m->cfg.n_vocab;
    std::vector<float> batch(size_t(n * V)), step(static_cast<size_t>(V)), scalar(static_cast<size_t>(V));
    InferenceState a(*m, 64), b(*m, 64), c(*m, 64);
    a.eval(toks.data(), n, batch.data(), true);  // prompt batch: f32 activations through GEMMs
    const auto rel = [V](const float* x, const float* ref) {
      double num = 0, den = 0;
      for (int64_t v = 0; v < V; v++) num += (x[v] - ref[v]) * (x[v] - ref[v]), den += ref[v] * ref[v];
      return std::sqrt(num / den);
    };
    // Q8_K rounds activations per 256 values (Q8_0 per 32), so its logits move more.
    const double bound = std::string(type) == "q4_k_m" ? 0.04 : 0.02;
    int64_t same_top = 0, same_as_scalar = 0;
    double max_rel = 0;
    for (int64_t i = 0; i < n; i++) {
      b.eval(toks.data() + i, 1, step.data(), false);  // one token at a time: the int8 kernels
      // The scalar reference kernels on the same tokens.
      qdot_use_simd(false);
      c.eval(toks.data() + i, 1, scalar.data(), false);
      qdot_use_simd(true);
      const float* ref = batch.data() + i * V;
      max_rel = std::max(max_rel, rel(step.data(), ref));
      same_top += std::max_element(step.begin(), step.end()) - step.begin() == std::max_element(ref, ref + V) - ref;
      // The same logits up to float summation order, which now and then puts
      // an activation on the other side of a rounding step: with Q8_K that
      // moves a position's logits by up to 2% (x86-64 and aarch64 alike),
      // both then as close to the f32 path as the bound says.
      const double apart = rel(step.data(), scalar.data());
      same_as_scalar += apart < 3e-3;
      EXPECT_TRUE(apart < 3e-3 || rel(scalar.data(), ref) < bound) << "position " << i << ": " << apart;
    }
    EXPECT_LT(max_rel, bound) << "worst relative logit difference";
    EXPECT_GE(same_top, n - 1);
    EXPECT_GE(same_as_scalar, n / 2);
  }
}

}  // namespace
}  // namespace lmpress
