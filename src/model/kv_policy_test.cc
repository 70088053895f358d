#include "model/kv_policy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "kernels/attention.h"
#include "model/forward.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

TEST(KvPolicy, ParsesAndNames) {
  KvPolicy p = parse_kv_policy("sink-window:4,192");
  EXPECT_EQ(p.kind, KvPolicyKind::SinkWindow);
  EXPECT_EQ(p.sinks, 4);
  EXPECT_EQ(p.window, 192);
  EXPECT_EQ(p.capacity(), 211);  // the window is cut in runs up to multiples of 16
  EXPECT_EQ(p.step(), 48);
  EXPECT_TRUE(p.bounded());
  EXPECT_EQ(kv_policy_name(p), "sink-window:4,192");
  p = parse_kv_policy("h2o:128");
  EXPECT_EQ(p.kind, KvPolicyKind::H2O);
  EXPECT_EQ(p.window, 64);  // half the budget recent by default
  EXPECT_EQ(p.capacity(), 128);
  EXPECT_EQ(kv_policy_name(parse_kv_policy("h2o:128,32")), "h2o:128,32");
  p = parse_kv_policy("snapkv:256,32");
  EXPECT_EQ(p.kind, KvPolicyKind::SnapKV);
  EXPECT_FALSE(p.bounded());
  EXPECT_FALSE(parse_kv_policy("none").active());
}

TEST(KvPolicy, BadPoliciesNameTheOption) {
  const std::pair<const char*, const char*> cases[] = {
      {"sink-window:4", "--kv-policy sink-window:4: expected two counts"},
      {"sink-window:4,0", "--kv-policy sink-window:4,0: the window must hold at least one position"},
      {"sink-window:-1,8", "--kv-policy sink-window:-1,8: '-1' is not a count"},
      {"h2o:10,10", "--kv-policy h2o:10,10: the recent window must be at least 1 and below the budget 10"},
      {"h2o:1", "--kv-policy h2o:1: the recent window must be at least 1"},
      {"h2o:x", "--kv-policy h2o:x: 'x' is not a count"},
      {"snapkv:8,9", "--kv-policy snapkv:8,9: the observation window must be at least 1 and below the budget 8"},
      {"lru:5", "--kv-policy 'lru:5': expected none, sink-window:S,W, h2o:B[,W] or snapkv:B,W"},
  };
  for (const auto& [text, msg] : cases) test::expect_error([&] { parse_kv_policy(text); }, msg);
  test::expect_error([] { check_kv_policy(parse_kv_policy("h2o:64"), KvType::KIVI4, 256, 256); },
                     "--kv-policy h2o:64,32 with --cache-type kivi4: a KIVI key group spans 64 positions");
  test::expect_error([] { check_kv_policy(parse_kv_policy("sink-window:4,300"), KvType::F16, 256, 256); },
                     "--kv-policy sink-window:4,300: it keeps up to 319 positions, more than the context of 256");
  test::expect_error([] { check_kv_policy(parse_kv_policy("snapkv:200,64"), KvType::F16, 256, 32); },
                     "--kv-policy snapkv:200,64: the observation window of 64 is larger than the batch of 32 tokens");
}

// sink-window's window start, by hand: S = 4, W = 10, E = 8 (capacity 21).
TEST(KvPolicy, SinkWindowRule) {
  KvPolicy p = parse_kv_policy("sink-window:4,10");
  p.block = 8;
  EXPECT_EQ(sink_window_start(p, 4, 17, 1), 4);  // 4 + 13 + 1 fit the 21
  EXPECT_EQ(sink_window_start(p, 4, 20, 1), 4);  // 4 + 16 + 1 just fit
  EXPECT_EQ(sink_window_start(p, 4, 21, 1), 8);  // 4 + 17 + 1 do not: [4, 8) goes, 14 newest remain
  EXPECT_EQ(sink_window_start(p, 8, 24, 1), 8);  // 4 + 16 + 1 fit
  EXPECT_EQ(sink_window_start(p, 8, 25, 1), 16);  // runs go while the step's last position keeps 10
  EXPECT_EQ(sink_window_start(p, 8, 25, 3), 16);
  EXPECT_EQ(sink_window_start(p, 4, 40, 2), 32);  // several runs at once: 40 + 2 − 32 = 10 newest
  EXPECT_EQ(sink_window_start(p, 4, 3, 5), 4);    // the sinks are not complete yet
}

TEST(KvPolicy, KeepRules) {
  std::vector<int64_t> k;
  keep_sink_window(10, 2, 6, k);
  EXPECT_EQ(k, (std::vector<int64_t>{0, 1, 6, 7, 8, 9}));
  keep_sink_window(5, 2, 6, k);  // nothing to evict
  EXPECT_EQ(k, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  // The newest 2, then the 3 largest of the 6 older scores; ties go to the older slot.
  const float s[8] = {5, 1, 4, 2, 4, 0, 0, 0};
  keep_heavy(s, 8, 2, 5, k);
  EXPECT_EQ(k, (std::vector<int64_t>{0, 2, 4, 6, 7}));
  keep_heavy(s, 8, 2, 4, k);
  EXPECT_EQ(k, (std::vector<int64_t>{0, 2, 6, 7}));
  // SnapKV pools over 5 slots: one hot slot (5) makes its neighbours 3, 4, 5
  // equal at 9/5, and the older of them win (unpooled, slot 5 would).
  const float w[8] = {0, 0, 0, 0, 0, 9, 100, 100};
  keep_snapkv(w, 8, 2, 4, k);
  EXPECT_EQ(k, (std::vector<int64_t>{3, 4, 6, 7}));
}

// attention_weights against softmaxes computed here in double.
TEST(KvPolicy, AttentionWeightsAreTheSoftmaxes) {
  AttentionShape s;
  s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 8;
  s.q_stride = s.out_stride = 32;
  s.kv_stride = 16;
  const int64_t n = 3, pos0 = 5, keys = pos0 + n;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> q(size_t(n * 32)), k(size_t(keys * 16));
  for (float& x : q) x = nd(rng);
  for (float& x : k) x = nd(rng);
  const float scale = 0.35f;
  std::vector<float> acc(size_t(2 * 10), 1.0f);  // adds to what is there; stride 10
  attention_weights(s, KvType::F32, q.data(), n, pos0, k.data(), scale, acc.data(), 10);
  for (int64_t g = 0; g < 2; g++) {
    std::vector<double> want(size_t(keys), 1.0);
    for (int64_t t = 0; t < n; t++)
      for (int64_t h = 2 * g; h < 2 * g + 2; h++) {
        std::vector<double> e(size_t(pos0 + t + 1));
        double sum = 0;
        for (int64_t j = 0; j <= pos0 + t; j++) {
          double d = 0;
          for (int64_t i = 0; i < 8; i++) d += double(q[size_t(t * 32 + h * 8 + i)]) * k[size_t(j * 16 + g * 8 + i)];
          sum += e[size_t(j)] = std::exp(d * scale);
        }
        for (int64_t j = 0; j <= pos0 + t; j++) want[size_t(j)] += e[size_t(j)] / sum;
      }
    for (int64_t j = 0; j < keys; j++) EXPECT_NEAR(acc[size_t(g * 10 + j)], want[size_t(j)], 1e-6) << g << " " << j;
    EXPECT_EQ(acc[size_t(g * 10 + 8)], 1.0f);  // past the keys: untouched
  }
}

class PolicyForward : public ::testing::Test {
 protected:
  // One block: a position's K and V depend on its token and position alone,
  // so a streamed cache can be rebuilt from scratch for comparison.
  void SetUp() override {
    dir_ = test::temp_dir();
    test::SyntheticSpec spec;
    spec.n_layers = 1;
    spec.ctx = 128;
    test::write_synthetic_hf(dir_, spec);
    m_ = load_model(dir_);
    for (int i = 0; i < 100; i++) toks_.push_back((i * 53 + 7) % 262);
  }
  // The last token's logits; `cached`: the positions the cache held then.
  std::vector<float> last_logits(const std::vector<int32_t>& toks, KvPolicy p = {}, bool one_by_one = false,
                                 int64_t* cached = nullptr) {
    InferenceState st(*m_, 128, 64, KvType::F32, p);
    std::vector<float> out(size_t(m_->cfg.n_vocab));
    if (!one_by_one) st.eval(toks.data(), int64_t(toks.size()), out.data(), false);
    for (size_t i = 0; one_by_one && i < toks.size(); i++) st.eval(&toks[i], 1, out.data(), false);
    if (cached) *cached = st.n_cached();
    return out;
  }
  std::string dir_;
  std::unique_ptr<Model> m_;
  std::vector<int32_t> toks_;
};

// A policy that has nothing to evict leaves the logits as they were, bit for bit.
TEST_F(PolicyForward, NothingToEvictChangesNothing) {
  const std::vector<int32_t> t(toks_.begin(), toks_.begin() + 40);
  const auto plain = last_logits(t);
  for (const char* p : {"sink-window:4,60", "h2o:64,8", "snapkv:60,8"}) EXPECT_EQ(last_logits(t, parse_kv_policy(p)), plain) << p;
}

// StreamingLLM: the newest token of a long stream sees the sinks and the
// window as a fresh sequence of sinks + window would (RoPE is relative), here
// where K and V depend on nothing else; without sinks, the window alone.
TEST_F(PolicyForward, SinkWindowEqualsAFreshSinksAndWindow) {
  for (const auto& [sinks, window] : {std::pair<int, int>{4, 16}, {0, 16}, {2, 37}}) {
    const KvPolicy p = parse_kv_policy("sink-window:" + std::to_string(sinks) + "," + std::to_string(window));
    for (int64_t len : {int64_t(sinks + window + 1), int64_t(70), int64_t(100)}) {
      const std::vector<int32_t> stream(toks_.begin(), toks_.begin() + len);
      for (bool one_by_one : {false, true}) {
        int64_t cached = 0;
        const auto got = last_logits(stream, p, one_by_one, &cached);
        if (len >= 70) {  // past the cache: the window is W to W + 15 positions
          EXPECT_GE(cached, sinks + window);
          EXPECT_LE(cached, p.capacity());
        }
        std::vector<int32_t> fresh(toks_.begin(), toks_.begin() + sinks);
        fresh.insert(fresh.end(), stream.end() - (cached - sinks), stream.end());
        const auto want = last_logits(fresh);
        double worst = 0;
        for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, double(std::abs(got[i] - want[i])));
        EXPECT_LT(worst, 2e-4) << kv_policy_name(p) << " over " << len << (one_by_one ? " one by one" : " in steps");
      }
    }
  }
}

TEST_F(PolicyForward, CachesStayWithinTheirBudgets) {
  InferenceState h2o(*m_, 128, 64, KvType::F16, parse_kv_policy("h2o:32,8"));
  std::vector<float> out(size_t(m_->cfg.n_vocab));
  h2o.eval(toks_.data(), 90, out.data(), false);
  EXPECT_EQ(h2o.n_cached(), 32);
  EXPECT_EQ(h2o.n_past(), 90);
  h2o.eval(toks_.data() + 90, 1, out.data(), false);
  EXPECT_EQ(h2o.n_cached(), 32);
  EXPECT_FALSE(h2o.full());
  for (float x : out) ASSERT_TRUE(std::isfinite(x));
  test::expect_error([&] { h2o.truncate(50); }, "truncate: positions were evicted from the cache (h2o:32,8)");
  test::expect_error([&] { h2o.rewind(h2o.mark()); }, "rewind: not with an eviction policy (h2o:32,8)");

  InferenceState snap(*m_, 64, 64, KvType::F16, parse_kv_policy("snapkv:24,8"));
  snap.eval(toks_.data(), 50, out.data(), false);  // the prompt: down to 24 once
  EXPECT_EQ(snap.n_cached(), 24);
  snap.eval(toks_.data() + 50, 30, out.data(), false);  // later positions all kept
  EXPECT_EQ(snap.n_cached(), 54);
  EXPECT_EQ(snap.n_past(), 80);
  test::expect_error([&] { snap.eval(toks_.data(), 11, out.data(), false); },
                     "context overflow: 54 tokens in the cache + 11 new exceed the context of 64");
}

}  // namespace
}  // namespace lmpress
