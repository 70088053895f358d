#include "eval/layer_skip.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "eval/kld.h"
#include "model/forward.h"
#include "model/repack.h"
#include "test_util.h"

namespace lmpress {
namespace {

// The loss of skipping block l equals the KLD of the full model against a
// copy of it built without block l (its layer list and per-layer sizes cut),
// which never reads the skip flags.
TEST(BlockSkip, LossEqualsTheModelWithoutTheBlock) {
  if (!test::have_shared("models/lmp-8m/config.json")) GTEST_SKIP() << "no lmp-8m";
  const auto m = load_for_inference(test::shared_path("models/lmp-8m"));
  const std::vector<int32_t> tokens = m->tokenizer->encode("The kernel scheduler decides which task runs next, and", true, false);
  const std::vector<double> loss = block_skip_kld(*m, tokens);
  const int64_t L = m->cfg.n_layers, T = int64_t(tokens.size()), V = m->cfg.n_vocab;
  ASSERT_EQ(int64_t(loss.size()), L);
  std::vector<float> full(size_t(T * V)), cut(size_t(T * V));
  InferenceState(*m, T, T).eval(tokens.data(), T, full.data(), true);
  for (int64_t l : {int64_t(0), L / 2, L - 1}) {
    Model without;
    without.cfg = m->cfg;
    without.cfg.n_layers = L - 1;
    auto erase = [&](std::vector<int64_t> v) {
      if (!v.empty()) v.erase(v.begin() + l);
      return v;
    };
    if (!m->cfg.layer_heads.empty())  // per-layer sizes (structured pruning); empty when uniform
      without.cfg.set_layer_dims(erase(m->cfg.layer_heads), erase(m->cfg.layer_kv_heads), erase(m->cfg.layer_ffn));
    without.rope_inv_freqs = m->rope_inv_freqs;
    without.tok_embd = m->tok_embd;
    without.output = m->output;
    without.output_norm = m->output_norm;
    without.layers = m->layers;
    without.layers.erase(without.layers.begin() + l);
    InferenceState(without, T, T).eval(tokens.data(), T, cut.data(), true);
    KldSums s;
    for (int64_t t = 0; t < T; t++) s.add(full.data() + t * V, cut.data() + t * V, V, 0);
    EXPECT_NEAR(loss[size_t(l)], s.sum_kld / double(s.count), 1e-9 * (1 + loss[size_t(l)])) << "block " << l;
    EXPECT_GT(loss[size_t(l)], 0.0);
  }
  for (double v : loss) EXPECT_TRUE(std::isfinite(v));
}

TEST(BlockSkip, LeastLossBlocksInBlockOrder) {
  EXPECT_EQ(least_loss_blocks({0.5, 0.1, 0.3, 0.1, 0.9}, 3), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(least_loss_blocks({0.5, 0.1, 0.3, 0.1, 0.9}, 1), (std::vector<int64_t>{1}));
  test::expect_error([] { least_loss_blocks({0.5, 0.1}, 2); }, "it must be in [1, 1]");
  test::expect_error([] { least_loss_blocks({0.5, 0.1}, 0); }, "it must be in [1, 1]");
}

}  // namespace
}  // namespace lmpress
