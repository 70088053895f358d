#include "compress/structured_prune.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "io/gguf.h"
#include "kernels/to_f32.h"
#include "model/export.h"
#include "model/forward.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

TEST(Structured, ParseSpec) {
  const auto o = parse_structured("heads=0.25,ffn=0.3,layers=2");
  EXPECT_DOUBLE_EQ(o.heads, 0.25);
  EXPECT_DOUBLE_EQ(o.ffn, 0.3);
  EXPECT_EQ(o.layers, 2);
  EXPECT_EQ(parse_structured("layers=1").layers, 1);
  const auto g = parse_structured("ffn=0.2,global,bias");
  EXPECT_TRUE(g.global);
  EXPECT_TRUE(g.bias);
  EXPECT_FALSE(o.global || o.bias);
  for (const char* bad : {"", "global", "heads", "heads=1.0", "globl,ffn=0.1", "ffn=-0.1", "layers=1.5", "depth=2", "ffn=abc", "heads=0.2x"})
    EXPECT_THROW(parse_structured(bad), Error) << bad;
}

// With an f32 KV cache: an f16 cache rounds each key, and a last-bit change
// upstream (a different summation order) can flip one of those roundings.
std::vector<float> logits_of(const Model& m, const std::vector<int32_t>& toks) {
  InferenceState st(m, int64_t(toks.size()), 64, KvType::F32);
  std::vector<float> out(toks.size() * size_t(m.cfg.n_vocab));
  st.eval(toks.data(), int64_t(toks.size()), out.data(), true);
  return out;
}

void zero_cols(Model& m, const std::string& name, int64_t from, int64_t to) {
  for (auto& t : m.tensors)
    if (t.name == name) {
      auto v = to_f32(t);
      for (int64_t r = 0; r < t.rows(); r++)
        for (int64_t c = from; c < to; c++) v[size_t(r * t.cols() + c)] = 0;
      t = make_f32_tensor(t.name, t.shape, std::move(v));
    }
}

// Channels, head groups and a block that contribute nothing (their output
// weights zeroed) carry no output energy / no angular change, so they are the
// ones removed — and the smaller model computes exactly what the zeroed one did.
TEST(Structured, RemovesDeadStructuresAndKeepsTheFunction) {
  const std::string dir = test::temp_dir();
  test::SyntheticSpec spec;
  spec.n_layers = 3;
  test::write_synthetic_hf(dir, spec);
  auto m = load_model(dir);
  const ModelConfig c = m->cfg;  // a copy: pruning changes m->cfg
  ASSERT_EQ(c.n_kv_heads, 2);
  ASSERT_EQ(c.ffn_dim, 48);
  const int64_t group_cols = c.head_dim * (c.n_heads / c.n_kv_heads);
  for (int64_t l = 0; l < 3; l++) {
    const std::string b = "blk." + std::to_string(l) + ".";
    zero_cols(*m, b + "attn_output.weight", group_cols, 2 * group_cols);  // KV group 1 is dead
    zero_cols(*m, b + "ffn_down.weight", 3 * l, 3 * l + 12);              // 12 dead channels, different per layer
  }
  zero_cols(*m, "blk.1.attn_output.weight", 0, c.q_dim());  // block 1 is the identity
  zero_cols(*m, "blk.1.ffn_down.weight", 0, c.ffn_dim);
  m->bind();
  const std::vector<int32_t> toks{1, 70, 80, 90, 100, 33, 44, 55, 66, 77};
  const auto want = logits_of(*m, toks);
  const int64_t params = m->n_params();
  StructuredOptions so;
  so.heads = 0.5, so.ffn = 0.25, so.layers = 1;
  const CalibrationOptions co =
      test::tiny_calibration(dir, "Calibration text for a tiny model, long enough for a few windows of tokens. "
                                  "It does not matter what it says, only that it exercises every channel.");
  const auto r = structured_prune(*m, so, co);
  EXPECT_EQ(r.removed_blocks, std::vector<int64_t>{1});
  EXPECT_NEAR(r.block_distance[1], 0.0, 1e-6);
  EXPECT_EQ(m->cfg.n_kv_heads, 1);
  EXPECT_EQ(m->cfg.n_heads, 2);
  EXPECT_EQ(m->cfg.ffn_dim, 36);
  EXPECT_EQ(m->cfg.n_layers, 2);
  // By hand: per remaining block, q/o lose dim·group_cols each, k/v dim·head_dim each, gate/up/down dim·12 each.
  const int64_t D = c.dim, per_block_removed = 2 * D * group_cols + 2 * D * c.head_dim + 3 * D * 12;
  const int64_t block_params = 2 * D * c.q_dim() + 2 * D * 2 * c.head_dim + 3 * D * 48 + 2 * D;
  EXPECT_EQ(r.params_before, params);
  EXPECT_EQ(r.params_after, params - block_params - 2 * per_block_removed);
  const auto got = logits_of(*m, toks);
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, double(std::fabs(got[i] - want[i])));
  EXPECT_LT(worst, 1e-4);
  EXPECT_THROW(structured_prune(*m, StructuredOptions{0, 0, 2}, co), Error);  // every block
}


// Dead heads and channels spread unevenly over the layers: global allocation
// finds exactly them (uniform could not), the layers end up with different
// sizes, the function is unchanged, and the model goes through GGUF as
// llama.cpp's "deci" layout (per-layer arrays) and back. Qwen2 checks the
// re-pairing of q/k rows and biases for RoPE on the way.
class StructuredGlobal : public testing::TestWithParam<const char*> {};

TEST_P(StructuredGlobal, RemovesUnevenDeadUnitsAndRoundTripsThroughGguf) {
  const std::string dir = test::temp_dir();
  test::SyntheticSpec spec;
  spec.arch = GetParam();
  spec.n_layers = 3;
  test::write_synthetic_hf(dir, spec);
  auto m = load_model(dir);
  const ModelConfig c = m->cfg;
  const int64_t group_cols = c.head_dim * (c.n_heads / c.n_kv_heads);
  zero_cols(*m, "blk.0.attn_output.weight", group_cols, 2 * group_cols);  // one dead group in layers 0 and 2
  zero_cols(*m, "blk.2.attn_output.weight", 0, group_cols);
  zero_cols(*m, "blk.0.ffn_down.weight", 0, 24);                          // 24 + 12 + 0 dead channels
  zero_cols(*m, "blk.1.ffn_down.weight", 30, 42);
  m->bind();
  const std::vector<int32_t> toks{1, 70, 80, 90, 100, 33, 44, 55, 66, 77};
  const auto want = logits_of(*m, toks);
  StructuredOptions so;
  so.heads = 2.0 / 6, so.ffn = 36.0 / 144, so.global = true;
  const CalibrationOptions co =
      test::tiny_calibration(dir, "Calibration text for a tiny model, long enough for a few windows of tokens.");
  const auto r = structured_prune(*m, so, co);
  EXPECT_EQ(r.layer_kv_heads, (std::vector<int64_t>{1, 2, 1}));
  EXPECT_EQ(r.layer_ffn, (std::vector<int64_t>{24, 36, 48}));
  EXPECT_FALSE(m->cfg.uniform());
  EXPECT_EQ(m->cfg.heads(1), c.n_heads);
  EXPECT_EQ(m->cfg.heads(2), c.n_heads / 2);
  const auto got = logits_of(*m, toks);
  double worst = 0;
  for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, double(std::fabs(got[i] - want[i])));
  EXPECT_LT(worst, 1e-4);

  const std::string path = dir + "/pruned.gguf";
  write_gguf_model(*m, path, {});
  const GGUFFile g = GGUFFile::open(path);
  EXPECT_EQ(g.req_string("general.architecture"), "deci");
  const auto& ffn = g.find("deci.feed_forward_length")->as_array();
  ASSERT_EQ(ffn.size(), 3u);
  EXPECT_EQ(ffn[0].as_int(), 24);
  EXPECT_EQ(g.find("deci.attention.head_count_kv")->as_array()[2].as_int(), 1);
  EXPECT_EQ(g.req_int("deci.attention.key_length"), c.head_dim);
  auto back = load_model(path);
  EXPECT_EQ(back->cfg.layer_ffn, m->cfg.layer_ffn);
  EXPECT_EQ(back->cfg.layer_heads, m->cfg.layer_heads);
  const auto reread = logits_of(*back, toks);
  worst = 0;
  for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, double(std::fabs(reread[i] - got[i])));
  EXPECT_LT(worst, 1e-4);
  // Bad per-layer metadata: each a clear error naming the problem.
  const std::vector<std::pair<GGUFValue, std::string>> bad{
      {GGUFValue::i32_array({24, 36}), "has 2 values for 3 layers"},
      {GGUFValue::array(GGUFType::FLOAT32, {GGUFValue::f32(1), GGUFValue::f32(2), GGUFValue::f32(3)}),
       "holds a non-integer"},
      {GGUFValue::str("24"), "should be an integer or an array"},
      {GGUFValue::i32_array({24, 0, 48}), "layer 1 has"},
  };
  for (const auto& [value, msg] : bad) {
    GGUFWriter w;
    for (const auto& [key, v] : g.kv) w.set(key, key == "deci.feed_forward_length" ? value : v);
    for (const auto& t : g.tensors()) w.add_tensor(t);
    w.write(dir + "/bad.gguf");
    try {
      load_model(dir + "/bad.gguf");
      ADD_FAILURE() << "loaded despite " << msg;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(write_hf_model(*m, dir + "/hf-out", {}), Error);  // no HF config expresses per-layer sizes
  EXPECT_FALSE(std::filesystem::exists(dir + "/hf-out"));         // refused before anything is written
  EXPECT_THROW(structured_prune(*back, so, co), Error);           // already non-uniform
}

INSTANTIATE_TEST_SUITE_P(Archs, StructuredGlobal, testing::Values("LlamaForCausalLM", "Qwen2ForCausalLM"),
                         [](const testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param).substr(0, 5);
                         });

// FLAP bias compensation keeps the mean output: over the calibration tokens,
// block 0's mean output (residual stream after it) is what it was before its
// MLP lost channels, while without compensation it moves.
TEST(Structured, BiasCompensationKeepsTheMeanOutput) {
  const std::string dir = test::temp_dir();
  test::SyntheticSpec spec;
  spec.n_layers = 2;
  test::write_synthetic_hf(dir, spec);
  const CalibrationOptions co =
      test::tiny_calibration(dir, "Some calibration text that yields a few windows of tokens for the means.");
  const auto mean_after_block0 = [&](const Model& m) {
    LayerwiseCalibrator cal(m, calibration_windows(m, co));
    cal.run(0, m.layers[0], nullptr, true);
    const auto& h = cal.hidden();
    const int64_t D = m.cfg.dim;
    std::vector<double> mean(size_t(D), 0.0);
    for (size_t i = 0; i < h.size(); i++) mean[i % size_t(D)] += h[i];
    for (auto& v : mean) v /= double(h.size() / size_t(D));
    return mean;
  };
  const auto dense = load_model(dir);
  const auto want = mean_after_block0(*dense);
  double moved[2] = {0, 0};
  for (bool bias : {false, true}) {
    auto m = load_model(dir);
    StructuredOptions so;
    so.ffn = 0.5, so.bias = bias;
    structured_prune(*m, so, co);
    EXPECT_EQ(m->find("blk.0.ffn_down.bias") != nullptr, bias);
    EXPECT_EQ(m->find("blk.0.attn_output.bias"), nullptr);  // no heads removed
    const auto got = mean_after_block0(*m);
    for (size_t i = 0; i < got.size(); i++) moved[bias] = std::max(moved[bias], std::fabs(got[i] - want[i]));
  }
  EXPECT_LT(moved[1], 1e-5);
  EXPECT_GT(moved[0], 100 * moved[1] + 1e-4);
}

}  // namespace
}  // namespace lmpress
