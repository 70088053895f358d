#include "model/early_exit.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "model/forward.h"
#include "model/repack.h"
#include "runtime/generate.h"
#include "test_util.h"

namespace lmpress {
namespace {

TEST(EarlyExit, ConfidenceMeasuresByHand) {
  // Probabilities 3/5, 1/5, 1/5: the margin is 2/5.
  const float logits[3] = {std::log(3.0f), 0.0f, 0.0f};
  EXPECT_NEAR(softmax_margin(logits, 3), 0.4, 1e-7);
  const float flat[4] = {1, 1, 1, 1};
  EXPECT_EQ(softmax_margin(flat, 4), 0.0);
  const float a[2] = {1, 0}, b[2] = {1, 1}, z[2] = {0, 0};
  EXPECT_NEAR(cosine_similarity(a, b, 2), std::sqrt(0.5), 1e-12);
  EXPECT_EQ(cosine_similarity(a, z, 2), 0.0);
}

TEST(EarlyExit, BadSettingsAreErrors) {
  ModelConfig c;
  c.n_layers = 4;
  test::expect_error([&] { check_early_exit({3, 0.5, ExitMeasure::Softmax}, c); }, "must be in [0, 2]");
  test::expect_error([&] { check_early_exit({1, 0.0, ExitMeasure::Softmax}, c); }, "must be in (0, 1]");
  test::expect_error([&] { check_early_exit({1, 1.5, ExitMeasure::State}, c); }, "must be in (0, 1]");
  test::expect_error([] { parse_exit_measure("entropy"); }, "softmax");
  check_early_exit({2, 1.0, ExitMeasure::State}, c);
}

class EarlyExitModel : public ::testing::Test {
 protected:
  void SetUp() override {
    // Head size 64: the quantized cache types' blocks fit.
    if (!test::have_shared("models/lmp-8m-w256/config.json")) GTEST_SKIP() << "no lmp-8m-w256";
    m_ = load_for_inference(test::shared_path("models/lmp-8m-w256"));
    prompt_ = m_->tokenizer->encode("The signal number of the device is passed to the handler as its first argument.", true, true);
  }
  // The prompt as one eval, then `steps` tokens one at a time (their ids
  // fixed: the text continued from a plain run), each step's logits kept.
  // `before(step, st)` runs before each step.
  std::vector<std::vector<float>> run(InferenceState& st, int steps,
                                      const std::function<void(int, InferenceState&)>& before = nullptr) {
    const int64_t V = m_->cfg.n_vocab;
    std::vector<std::vector<float>> out;
    std::vector<float> logits(static_cast<size_t>(V));
    st.eval(prompt_.data(), int64_t(prompt_.size()), logits.data(), false);
    for (int i = 0; i < steps; i++) {
      const int32_t id = int32_t(100 + 37 * i % 300);
      if (before) before(i, st);
      st.eval(&id, 1, logits.data(), false);
      out.push_back(logits);
    }
    return out;
  }
  std::unique_ptr<Model> m_;
  std::vector<int32_t> prompt_;
};

// A threshold no step reaches runs the whole model: every logit as plain
// decoding's.
TEST_F(EarlyExitModel, NeverConfidentIsFullDepth) {
  for (ExitMeasure me : {ExitMeasure::Softmax, ExitMeasure::State}) {
    InferenceState plain(*m_, 128), ee(*m_, 128);
    ee.set_early_exit({1, 1.0, me});
    const auto want = run(plain, 12), got = run(ee, 12);
    EXPECT_EQ(got, want) << exit_measure_name(me);
    EXPECT_EQ(ee.early_exit_stats().steps, 12);
    EXPECT_EQ(ee.early_exit_stats().exited, 0);
  }
}

// A threshold every step reaches: each decoded token's logits are those of
// the model cut after block K (its later blocks skipped), since a token that
// exits reads nothing of the blocks after K.
TEST_F(EarlyExitModel, AlwaysConfidentIsTheModelCutAfterTheExitBlock) {
  const int64_t L = m_->cfg.n_layers;
  for (const KvCacheSpec kv : {KvCacheSpec{}, KvCacheSpec{KvType::Q8_0, KvType::Q8_0}})
    for (int64_t k : {int64_t(0), L - 2}) {
      InferenceState cut(*m_, 128, 512, kv), ee(*m_, 128, 512, kv);
      std::vector<bool> skip(size_t(L), false);
      for (int64_t l = k + 1; l < L; l++) skip[size_t(l)] = true;
      cut.skip_layers(skip);
      ee.set_early_exit({k, 1e-30, ExitMeasure::Softmax});
      // The prompt runs whole in `ee`: the cut model must see it cut.
      std::vector<std::vector<float>> want = run(cut, 10), got = run(ee, 10);
      EXPECT_EQ(got, want) << "exit after block " << k << ", cache " << kv_spec_name(kv);
      EXPECT_EQ(ee.early_exit_stats().exited, 10);
    }
}

// The K/V rows a token that exited leaves in the blocks after K: with K the
// second-to-last block, the last block's input is block K's output whether
// the token exits or not, so the propagated rows are full depth's, and the
// tokens after it see exactly what plain decoding's see. (Without the
// propagation they would read an empty row and differ.)
TEST_F(EarlyExitModel, PropagatedRowsOneBlockAfterTheExitAreFullDepths) {
  const int64_t K = m_->cfg.n_layers - 2;
  for (const KvCacheSpec kv : {KvCacheSpec{}, KvCacheSpec{KvType::Q4_0, KvType::Q8_0}}) {
    InferenceState plain(*m_, 128, 512, kv), ee(*m_, 128, 512, kv);
    const auto want = run(plain, 8);
    // Steps 2 and 5 exit; the others run whole.
    const auto got = run(ee, 8, [&](int i, InferenceState& st) {
      st.set_early_exit({K, i == 2 || i == 5 ? 1e-30 : 1.0, ExitMeasure::Softmax});
    });
    EXPECT_EQ(ee.early_exit_stats().exited, 2);
    for (int i : {0, 1, 3, 4, 6, 7}) EXPECT_EQ(got[size_t(i)], want[size_t(i)]) << "step " << i;
    EXPECT_NE(got[2], want[2]);
  }
}

// With a block between the exit and the last, the rows come from the exited
// state, not full depth: the steps after an exit differ from plain decoding.
TEST_F(EarlyExitModel, StepsAfterAnEarlierExitSeeThePropagatedState) {
  InferenceState plain(*m_, 128), ee(*m_, 128);
  const auto want = run(plain, 4);
  const auto got = run(ee, 4, [&](int i, InferenceState& st) { st.set_early_exit({0, i == 1 ? 1e-30 : 1.0}); });
  EXPECT_EQ(got[0], want[0]);
  EXPECT_NE(got[2], want[2]);
}

TEST_F(EarlyExitModel, CachesItCannotFillAreErrors) {
  InferenceState kivi(*m_, 128, 512, KvCacheSpec{KvType::KIVI4, KvType::KIVI4});
  test::expect_error([&] { kivi.set_early_exit({1, 0.5}); }, "KIVI");
  InferenceState evict(*m_, 128, 512, {}, parse_kv_policy("h2o:32"));
  test::expect_error([&] { evict.set_early_exit({1, 0.5}); }, "--kv-policy h2o");
  InferenceState st(*m_, 128);
  test::expect_error([&] { st.set_early_exit({m_->cfg.n_layers - 1, 0.5}); }, "--exit-layer");
  GenerateOptions g;
  g.early_exit = {1, 0.5};
  NgramDrafter d(1, 3);
  g.drafter = &d;
  test::expect_error([&] { generate(*m_, "Once", g, nullptr); }, "--early-exit with --spec");
}

}  // namespace
}  // namespace lmpress
